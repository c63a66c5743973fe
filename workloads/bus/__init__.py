"""The message bus of the runtime: the :class:`~.base.Bus` protocol, topic names (:mod:`.topics`) and the
in-process implementation the local runner uses (:class:`~.inprocess.InProcessBus`). The Kafka adapter
(issue 7) implements the same protocol, so the runtime does not know which one it runs on."""

from .base import BackpressureError, Bus, Consumer, Handler, Key, Record, Subscription
from .inprocess import InProcessBus, InProcessConsumer, InProcessSubscription
from .topics import audit_topic, fills_topic, intents_topic, md_topic, parse_topic, signals_topic, validate_topic

__all__ = [
    "BackpressureError",
    "Bus",
    "Consumer",
    "Handler",
    "InProcessBus",
    "InProcessConsumer",
    "InProcessSubscription",
    "Key",
    "Record",
    "Subscription",
    "audit_topic",
    "fills_topic",
    "intents_topic",
    "md_topic",
    "parse_topic",
    "signals_topic",
    "validate_topic",
]
