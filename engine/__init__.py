"""tradeplane.engine: pure, deterministic trading logic with no I/O.

Events, order books, features, labels, costs, models, decisions, risk checks and the execution simulator.
Backtests, the local runner, cluster workloads and the RL environment all call this same code, so a
decision made live can be replayed bit for bit offline. Nothing here imports workloads, operator or rl.
"""
