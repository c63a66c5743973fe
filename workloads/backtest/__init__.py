"""Backtest outputs: the HTML/PNG report (:mod:`.report`) and the Parquet/ClickHouse tables (:mod:`.tables`).

Both read a finished :class:`~tradeplane.engine.sim.result.BacktestResult` and never touch the simulator.
"""
