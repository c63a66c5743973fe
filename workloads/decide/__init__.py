"""The decide workload (paper mode: the desk runtime answering execute's venue steps)."""
