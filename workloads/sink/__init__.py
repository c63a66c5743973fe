"""The sink workload: every stored topic family from Kafka into ClickHouse (``tradeplane workload sink``).

:mod:`.sink` is the loop (records → rows → checkpoints and commits), :mod:`.buffer` keeps rows through a
ClickHouse outage, :mod:`.spill` is its disk (segments, durable marks), :mod:`.validate` checks rows against
the tables, :mod:`.options` the settings, :mod:`.main` the process wiring. See docs/dataplane.md, "The sink".
"""
