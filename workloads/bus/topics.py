"""Topic names of the bus: one family per kind of message, one topic per venue+symbol, strategy or account.

=================================  ==========================================  ==================
topic                              payload                                     key
=================================  ==========================================  ==================
``md.<venue>.<symbol>``            market-data micro-batches (EVENT_DTYPE)     symbol
``signals.<strategy>``             Signal (``signal.proto``)                   symbol
``intents.<strategy>``             Intent (``signal.proto``)                   symbol
``fills.<account>``                fills and order reports of one account      symbol
``audit.<strategy>``               audit records (JSON)                        symbol
``desk.<account>``                 the desk's own rows: positions, equity,     symbol
                                   risk events, rejections (:mod:`.rows`)
``venue.<account>``                paper mode, execute → decide: one venue     account
                                   step (:mod:`..paper.protocol`)
``orders.<account>``               paper mode, decide → execute: the parent    account
                                   orders and cancels of that step
``dlq.<family>``                   dead letters of a family: the original      as the original
                                   bytes + ``tp-dlq-*`` headers (Kafka)
=================================  ==========================================  ==================

Why so strict: the same names become Kafka topics (issue 7), where a typo creates a new empty topic
instead of failing, and where ``.`` separates the parts a consumer pattern (``fills.*``) matches on. Each
part is therefore one token of letters, digits, ``_`` and ``-`` (Kubernetes names, Binance symbols and
venue names all are), and the whole name stays under Kafka's 249-character limit.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final

MD: Final = "md"
SIGNALS: Final = "signals"
INTENTS: Final = "intents"
FILLS: Final = "fills"
AUDIT: Final = "audit"
DESK: Final = "desk"
VENUE: Final = "venue"
ORDERS: Final = "orders"
DLQ: Final = "dlq"

FAMILIES: Final[dict[str, tuple[str, ...]]] = {
    MD: ("venue", "symbol"),
    SIGNALS: ("strategy",),
    INTENTS: ("strategy",),
    FILLS: ("account",),
    AUDIT: ("strategy",),
    DESK: ("account",),
    VENUE: ("account",),
    ORDERS: ("account",),
    DLQ: ("family",),
}
"""Family → the names of the parts that follow it."""

MAX_TOPIC_LENGTH: Final = 249
"""Kafka's limit on a topic name."""

_PART: Final = re.compile(r"[A-Za-z0-9_-]{1,100}")


def _part(kind: str, value: str) -> str:
    if not isinstance(value, str) or not _PART.fullmatch(value):
        raise ValueError(f"{kind} {value!r} is not a valid topic part (1-100 of A-Z a-z 0-9 _ -)")
    return value


def md_topic(venue: str, symbol: str) -> str:
    """``md.<venue>.<symbol>``, e.g. ``md.binance-usdm.BTCUSDT``."""
    return f"{MD}.{_part('venue', venue)}.{_part('symbol', symbol)}"


def md_pattern(venues: Iterable[str]) -> str:
    """The subscription of a consumer of these market-data venues: ``md.<venue>.*`` for one venue (the desk's
    usual case: fewer topics to match), ``md.*`` for several."""
    distinct = set(venues)
    return f"{MD}.{_part('venue', distinct.pop())}.*" if len(distinct) == 1 else f"{MD}.*"


def signals_topic(strategy: str) -> str:
    """``signals.<strategy>``."""
    return f"{SIGNALS}.{_part('strategy', strategy)}"


def intents_topic(strategy: str) -> str:
    """``intents.<strategy>``."""
    return f"{INTENTS}.{_part('strategy', strategy)}"


def fills_topic(account: str) -> str:
    """``fills.<account>`` (one account per venue credential; ``paper`` for the simulator)."""
    return f"{FILLS}.{_part('account', account)}"


def audit_topic(strategy: str) -> str:
    """``audit.<strategy>``."""
    return f"{AUDIT}.{_part('strategy', strategy)}"


def desk_topic(account: str) -> str:
    """``desk.<account>``: what the desk records about itself (positions, equity, risk events, rejections)."""
    return f"{DESK}.{_part('account', account)}"


def venue_topic(account: str) -> str:
    """``venue.<account>``: paper mode's venue steps, from the simulator in ``execute`` to ``decide``."""
    return f"{VENUE}.{_part('account', account)}"


def orders_topic(account: str) -> str:
    """``orders.<account>``: paper mode's parent orders and cancels, from ``decide`` back to ``execute``."""
    return f"{ORDERS}.{_part('account', account)}"


def dlq_topic(family: str) -> str:
    """``dlq.<family>``: where records of ``family`` that cannot be processed go (e.g. ``dlq.md``).

    One dead-letter topic per family, not per source topic: poison messages are rare, and one place per
    kind of payload is what an operator inspects. The source topic travels in a header (:mod:`.kafka`).
    """
    if family not in FAMILIES or family == DLQ:
        known = ", ".join(f for f in FAMILIES if f != DLQ)
        raise ValueError(f"dead-letter family {family!r} is not a topic family (known: {known})")
    return f"{DLQ}.{family}"


def parse_topic(topic: str) -> tuple[str, dict[str, str]]:
    """``(family, {part name: value})`` of a valid topic; ``ValueError`` naming the topic otherwise.

    >>> parse_topic("md.binance-spot.BTCUSDT")
    ('md', {'venue': 'binance-spot', 'symbol': 'BTCUSDT'})
    """
    if not isinstance(topic, str) or not topic:
        raise ValueError(f"topic must be a non-empty string, got {topic!r}")
    if len(topic) > MAX_TOPIC_LENGTH:
        raise ValueError(f"topic {topic[:40]!r}... is longer than {MAX_TOPIC_LENGTH} characters")
    family, *parts = topic.split(".")
    names = FAMILIES.get(family)
    if names is None:
        raise ValueError(f"topic {topic!r}: unknown family {family!r} (known: {', '.join(FAMILIES)})")
    if len(parts) != len(names):
        shape = ".".join([family, *(f"<{n}>" for n in names)])
        raise ValueError(f"topic {topic!r} does not have the shape {shape}")
    for name, value in zip(names, parts, strict=True):
        try:
            _part(name, value)
        except ValueError as exc:
            raise ValueError(f"topic {topic!r}: {exc}") from None
    if family == DLQ and (parts[0] not in FAMILIES or parts[0] == DLQ):
        raise ValueError(f"topic {topic!r}: {parts[0]!r} is not a family that can have dead letters")
    return family, dict(zip(names, parts, strict=True))


def validate_topic(topic: str) -> str:
    """``topic`` itself when valid (:func:`parse_topic`), else ``ValueError`` naming it."""
    parse_topic(topic)
    return topic
