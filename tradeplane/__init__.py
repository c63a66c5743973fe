"""tradeplane: a Kubernetes-native platform for systematic crypto trading.

Layers (each its own import package): ``tradeplane.api`` (the v1alpha1 types), ``tradeplane.engine``
(pure trading logic), ``tradeplane.workloads`` (I/O adapters and processes), ``tradeplane.operator``
(kopf operator) and ``tradeplane.rl`` (RL training). See docs/architecture.md.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("tradeplane")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0+unknown"
