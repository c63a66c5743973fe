"""The RiskBudget risk engine: one :class:`~tradeplane.engine.risk.engine.RiskEngine` per RiskBudget, shared by
every strategy charged to it, so the limits bound the desk as a whole and not each strategy on its own.

Two halves. Pre-trade (:meth:`RiskEngine.check_order`): every order is checked against the phase, the circuit
breakers and the exposure limits *as if it filled*, and a refusal always carries one reason code and the
values that broke the limit. Continuous (:meth:`RiskEngine.evaluate`, every tick): daily loss, drawdown,
consecutive losses and the breakers move the budget through Active → Reducing → Halted and tell the runtime
what to do right now (cancel everything, flatten). Pure like the rest of the engine: time is an argument
(int64 ns), nothing reads a clock, the same inputs give the same phases and rejections in a backtest and live.

Modules: :mod:`.reasons` (codes), :mod:`.config` (the compiled spec), :mod:`.ledger` (positions and PnL from
fills and marks), :mod:`.breakers` (data-health breakers with cooldown), :mod:`.engine` (checks and phases).
User documentation: ``docs/risk.md``.
"""
