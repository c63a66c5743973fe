"""``tradeplane run`` on one machine: the local runner (in-process bus, chDB store, paper or replayed venue) and
its run report (:mod:`.report`).

Why a package of its own: the local runner wires the pure engine to local I/O only, so the same decisions can be
replayed and audited without a cluster; the cluster workloads reuse the engine, not this wiring.
"""
