"""Reconcilers: read what exists, call a renderer, converge the children, write status only when it
changed. Blocking functions (kopf runs them in its executor threads); all API calls go through
:class:`~tradeplane.operator.kube.KubeClient`, and nothing here imports kopf, so tests and benchmarks call
them directly."""
