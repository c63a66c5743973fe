"""tradeplane.io/v1alpha1: the API types, the single source of truth for the CRDs.

Import resources and specs from here; the submodules are an implementation detail.
"""

from ._base import API_VERSION, GROUP, VERSION, Condition, ConditionStatus, ConditionType, ObjectMeta
from .modelversion import ModelVersionPhase, ModelVersionSpec, ModelVersionStatus
from .resources import CATEGORY, RESOURCES, RESOURCES_BY_KIND, ModelVersion, ResourceDef, RiskBudget, Strategy
from .riskbudget import RiskBudgetPhase, RiskBudgetSpec, RiskBudgetStatus
from .strategy import StrategyPhase, StrategySpec, StrategyStatus

__all__ = [
    "API_VERSION",
    "CATEGORY",
    "GROUP",
    "RESOURCES",
    "RESOURCES_BY_KIND",
    "VERSION",
    "Condition",
    "ConditionStatus",
    "ConditionType",
    "ModelVersion",
    "ModelVersionPhase",
    "ModelVersionSpec",
    "ModelVersionStatus",
    "ObjectMeta",
    "ResourceDef",
    "RiskBudget",
    "RiskBudgetPhase",
    "RiskBudgetSpec",
    "RiskBudgetStatus",
    "Strategy",
    "StrategyPhase",
    "StrategySpec",
    "StrategyStatus",
]
