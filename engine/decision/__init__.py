"""The per-tick decision: features → score (model router or rules-only fallback) → L0 gates → rules → sizing
→ utility filter (τ, κ) → cooldown and de-duplication → an idempotent intent.

Pure like the rest of the engine: the decision time, the clock used to measure latency, the risk engine's
headroom and the configuration snapshot are arguments, so a replay of the same inputs yields the same
signals and intents. Entry point: :func:`tradeplane.engine.decision.pipeline.decide`.
"""
