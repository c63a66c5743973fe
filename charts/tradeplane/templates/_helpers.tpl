{{/* Names and labels shared by every template. */}}
{{- define "tradeplane.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "tradeplane.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "tradeplane.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "tradeplane.serviceAccountName" -}}
{{- default (include "tradeplane.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{- define "tradeplane.watchNamespace" -}}
{{- default .Release.Namespace .Values.operator.watchNamespace -}}
{{- end -}}

{{/* The platform image of the operator pod. */}}
{{- define "tradeplane.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{/* The image the operator puts into workload and Ray pods: workloads.image, else the chart image. */}}
{{- define "tradeplane.workloadImage" -}}
{{- default (include "tradeplane.image" .) .Values.workloads.image -}}
{{- end -}}

{{- define "tradeplane.workloadImagePullPolicy" -}}
{{- default .Values.image.pullPolicy .Values.workloads.imagePullPolicy -}}
{{- end -}}

{{/* ServiceAccount of the workload pods: <fullname>-workload when created; "" = the namespace's default. */}}
{{- define "tradeplane.workloadServiceAccountName" -}}
{{- if .Values.workloads.serviceAccount.create -}}
{{- default (printf "%s-workload" (include "tradeplane.fullname" .)) .Values.workloads.serviceAccount.name -}}
{{- else -}}
{{- .Values.workloads.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Namespace of RayService/RayJob objects; "" = the owner's (the watch namespace). */}}
{{- define "tradeplane.rayNamespace" -}}
{{- default (include "tradeplane.watchNamespace" .) .Values.ray.namespace -}}
{{- end -}}

{{/* Cluster-scoped objects are shared by every release: their names carry the release namespace. */}}
{{- define "tradeplane.clusterName" -}}
{{- printf "%s-%s" .Release.Namespace (include "tradeplane.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "tradeplane.imagePullSecrets" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
{{- range . }}
  - name: {{ . }}
{{- end }}
{{- end }}
{{- end -}}
