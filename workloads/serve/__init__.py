"""Ray Serve inference for ModelVersions with ``spec.serving.mode: rayserve``.

* ``config`` — pure: a family's ModelVersion specs → the Serve application config (the operator renders it
  into a RayService's ``serveConfigV2``). No Ray import.
* ``deployments`` / ``app`` — the Serve side: one ONNX deployment per version with dynamic batching, the
  family's router (engine ModelRouter) as ingress, weights and batching through ``user_config``.
* ``client`` — the decide workload's side: drop-in scorers with deadlines and a degraded flag.

Nothing is imported here, so ``tradeplane.workloads.serve.config`` stays importable without Ray.
"""
