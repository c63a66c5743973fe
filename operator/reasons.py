"""Condition and Event reasons, as named constants: ``kubectl describe`` tells a story, and tests and
alerts match on these strings instead of prose (KubeRay keeps its event reasons in one place the same way).
"""

from __future__ import annotations

from typing import Final

RECONCILED: Final = "Reconciled"  #: every child exists and matches the spec
CHILDREN_NOT_READY: Final = "ChildrenNotReady"  #: children exist, some Deployments are not available yet
SUSPENDED: Final = "Suspended"  #: spec.suspend: workloads scaled to zero
INVALID_SPEC: Final = "InvalidSpec"  #: the spec fails validation the CRD schema cannot express
RISK_BUDGET_NOT_FOUND: Final = "RiskBudgetNotFound"  #: spec.riskBudgetRef names no RiskBudget
RISK_BUDGET_HALTED: Final = "RiskBudgetHalted"  #: the budget's kill switch is on
KILL_SWITCH: Final = "KillSwitch"  #: a RiskBudget's own reason while spec.halt is true
WITHIN_LIMITS: Final = "WithinLimits"  #: a RiskBudget trading normally
REDUCE_ONLY: Final = "ReduceOnly"  #: a RiskBudget near its loss or drawdown limit
LIMIT_BREACHED: Final = "LimitBreached"  #: a RiskBudget over its daily-loss or drawdown limit

TRAINING_RUNNING: Final = "TrainingRunning"  #: the RayJob is on its way (or paused)
TRAINING_SUCCEEDED: Final = "TrainingSucceeded"  #: the RayJob succeeded; spec.artifact not recorded yet
TRAINING_FAILED: Final = "TrainingFailed"  #: the RayJob failed, was stopped or hit its deadline
SERVING_READY: Final = "ServingReady"  #: the family's RayService serves this version
SERVING_NOT_READY: Final = "ServingNotReady"  #: the RayService or this version's application is not serving

# Event reasons (besides the condition reasons above, which are also emitted as events on transitions).
CREATED: Final = "Created"  #: a child was created
UPDATED: Final = "Updated"  #: a child was brought back to the rendered spec (spec change or drift)
DELETED: Final = "Deleted"  #: a child that is no longer rendered was deleted
CONFIG_CHANGED: Final = "ConfigChanged"  #: the rendered config revision changed (rolling restart)

# Rollouts (conditions of a ModelVersion in a rollout phase; the transitions' own events come from
# engine/rollout: RolloutStarted, StepAdvanced, AnalysisPassed/Failed/Inconclusive, Promoted, RolledBack, …).
ROLLOUT_PROGRESSING: Final = "RolloutProgressing"  #: a canary or shadow under analysis
ROLLOUT_PROMOTED: Final = "Promoted"  #: the candidate is (or was) the family's stable
ROLLOUT_ROLLED_BACK: Final = "RolledBack"  #: the candidate lost its traffic (analysis, guard or abort)
ROLLOUT_COMMAND_INVALID: Final = "RolloutCommandInvalid"  #: the rollout-command annotation is not a command
ROUTES_CHANGED: Final = "RoutesChanged"  #: the family's routes (weights/roles) changed
