"""Options both sides of paper mode read: they must describe the same desk and the same simulator."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry
from pydantic import BaseModel, ConfigDict, Field, field_validator

from ...settings import Settings
from ..bus.kafka import KafkaBus
from ..bus.topics import _PART, orders_topic, venue_topic
from ..service.health import CheckResult


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


#: librdkafka consumer settings that make a group join fast (Tansu takes ~23 s with the defaults; harmless on
#: Apache Kafka for these single-member groups)
_FAST_JOIN = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 500}
#: a venue step of a fast replay can hold seconds of market data (MBs); on Apache Kafka give the venue topic
#: ``max.message.bytes`` to match (docs/dataplane.md)
_BIG_MESSAGES = {"message.max.bytes": 64 * 1024 * 1024}


def lockstep_bus(settings: Settings, opts: PaperDeskOptions, side: str, registry: CollectorRegistry) -> KafkaBus:
    """The Kafka bus of one side of the lock-step: no producer linger (every step waits for the answer),
    large messages, fast group joins, the cluster's security settings; the topics of the pair created."""
    security = settings.kafka.client_security()
    bus = KafkaBus(settings.kafka.bootstrap_servers, client_id=f"{side}-{opts.account}", linger_ms=0.0,
                   producer_config=_BIG_MESSAGES | security, consumer_config=_FAST_JOIN | security,
                   fetch_wait_max_ms=opts.fetch_wait_ms, registry=registry)  # fmt: skip
    bus.ensure_topics([venue_topic(opts.account), orders_topic(opts.account)])
    return bus


def bus_check(bus: KafkaBus) -> Callable[[], CheckResult]:
    """The ``kafka`` readiness check of a lock-step side: the producer's health as the bus reports it."""

    def check() -> CheckResult:
        h = bus.health()
        return CheckResult.passed("producer ok") if h["status"] == "ok" else CheckResult.failed(str(h))

    return check
