"""Execution simulator: order and fill records, queue-aware matching with latency, portfolio accounting.

The same order and fill semantics serve backtests, paper trading and the RL environment (docs/backtest.md).
"""
