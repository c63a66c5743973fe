"""Smoke test of the local Ray runtime: a remote task and a stateful actor return the right values.

Ray hosts the RL training and Serve workloads; if tasks or actors do not work, nothing built on them can.
"""

from __future__ import annotations

import ray

from tests.services import RayRuntime


@ray.remote
def square(x: int) -> int:
    return x * x


@ray.remote
class Counter:
    """Holds state between calls, which is what distinguishes an actor from a task."""

    def __init__(self, start: int) -> None:
        self.value = start

    def add(self, n: int) -> int:
        self.value += n
        return self.value


def test_remote_task(ray_runtime: RayRuntime) -> None:
    assert ray.get([square.remote(i) for i in range(10)], timeout=60) == [i * i for i in range(10)]


def test_actor_keeps_state(ray_runtime: RayRuntime) -> None:
    counter = Counter.remote(10)  # type: ignore[attr-defined]
    assert ray.get([counter.add.remote(i) for i in (1, 2, 3)], timeout=60) == [11, 13, 16]
    assert ray.cluster_resources().get("CPU") == ray_runtime.num_cpus  # type: ignore[no-untyped-call]
