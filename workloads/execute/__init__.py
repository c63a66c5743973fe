"""The execute workload (paper mode: the simulator, driving decide in lock-step)."""
