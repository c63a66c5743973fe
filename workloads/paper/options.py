"""Options both sides of paper mode read: they must describe the same desk and the same simulator."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..bus.topics import _PART


class PaperDeskOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    manifests: list[Path] = Field(min_length=1, description="Strategy, RiskBudget and ModelVersion manifests (files "
                                  "or directories), as mounted from the rendered ConfigMap.")  # fmt: skip
    account: str = Field(default="paper", pattern=_PART.pattern, description="Account name: topics "
                         "venue.<account>, orders.<account>, fills.<account>, desk.<account>.")  # fmt: skip
    initial_balance: float = Field(default=10_000.0, gt=0, description="Paper account balance (USDT).")
    seed: int = Field(default=0, ge=0, description="Simulator seed (latency draws, TWAP jitter).")
    fetch_wait_ms: int = Field(default=5, ge=1, le=500, description="Kafka fetch.wait.max.ms of the consumers.")

    @field_validator("manifests", mode="before")
    @classmethod
    def _paths(cls, value: Any) -> Any:
        """From an env variable the list arrives as text: a JSON list, or paths separated by commas."""
        if isinstance(value, str):
            text = value.strip()
            return json.loads(text) if text.startswith("[") else [p for p in text.split(",") if p.strip()]
        return value

    answer_timeout_s: float = Field(default=20.0, gt=0, description="How long one side waits for the other's "
                                    "answer before the step fails (exit 5).")  # fmt: skip
