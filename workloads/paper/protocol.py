"""Paper mode's lock-step between ``execute`` (the simulator: the venue and the market clock) and ``decide``
(the desk runtime): one venue step out, one answer back, per strategy call.

Why a lock-step: in paper mode the simulator *is* the exchange, and the desk's orders must reach it at the
local time the desk decided them, before the simulator moves on — exactly as in the local runner, where the
two run in one loop. One Kafka round trip per call keeps the split deterministic, so the cluster's stored
results equal the local run's on the same events (``tests/integration/test_dataplane_processes.py``).

``venue.<account>`` — :class:`VenueStep`, binary (it carries the market batch: no JSON on this path)::

    magic "TPVS" | u16 schema version | u16 top levels | u32 symbols | u64 session | u64 seq | i64 now
    | u32 counts × 7 (events, tops, fills, reports, parents, account rows, touch rows)
    | the seven record arrays, each as raw little-endian records of its fixed dtype, 8-byte aligned

``orders.<account>`` — :class:`OrderCommands`, JSON (a handful of commands per call, mostly none)::

    {"v": 1, "session": …, "seq": …, "now": …, "commands": [{"op": "start", "pid": 7, "symbol": 0, …},
                                                           {"op": "cancel", "pid": 5}]}

``session`` (random, chosen by ``execute`` at start) tells the two processes' runs apart: a ``decide`` that
sees a new session starts a fresh desk, and each side ignores the other's messages of older sessions.
``seq`` numbers the calls from 1; a redelivered step (same ``seq``) is answered once.
"""

from __future__ import annotations

import struct
from dataclasses import asdict, dataclass, field
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import orjson

from ...engine.events import EVENT_DTYPE, book_top_dtype
from ...engine.sim.executors import STYLE_NAMES, TwapSpec
from ...engine.sim.orders import FILL_DTYPE, ORDER_DTYPE
from ...engine.sim.portfolio import ACCOUNT_DTYPE
from ...engine.sim.result import PARENT_DTYPE
from ...engine.sim.routing import Route, RoutingTable

MAGIC: Final = b"TPVS"
SCHEMA_VERSION: Final = 1
ORDERS_SCHEMA_VERSION: Final = 1
#: ``VenueStep.session`` of live execute's start announcement (decide sessions are never 0)
ANNOUNCE_SESSION: Final = 0
_HEAD = struct.Struct("<4sHHIQQq7I")
TOUCH_DTYPE: Final = np.dtype([("bid", "f8"), ("bid_qty", "f8"), ("ask", "f8"), ("ask_qty", "f8")])
Records = npt.NDArray[np.void]


class ProtocolError(ValueError):
    """A lock-step message that cannot be decoded, or an answer that does not fit the step; names the field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"paper protocol {field}: {message}")
        self.field = field


@dataclass(frozen=True)
class VenueStep:
    """What the strategy receives at local time ``now``: the market batch, the executors' parent records
    that changed since the previous step, the account rows and the touch per symbol."""

    session: int
    seq: int
    now: int
    events: Records
    tops: Records
    fills: Records
    reports: Records
    parents: Records  #: PARENT_DTYPE rows changed (or created) since the previous step
    account: Records  #: ACCOUNT_DTYPE, one row per symbol id
    touch: Records  #: TOUCH_DTYPE, one row per symbol id: the touch as the strategy last received it
    levels: int = 10


def _dtypes(levels: int) -> tuple[np.dtype[Any], ...]:
    return (EVENT_DTYPE, book_top_dtype(levels), FILL_DTYPE, ORDER_DTYPE, PARENT_DTYPE, ACCOUNT_DTYPE, TOUCH_DTYPE)


def _pad(n: int) -> int:
    return (n + 7) & ~7


def encode_venue_step(step: VenueStep) -> bytes:
    arrays = (step.events, step.tops, step.fills, step.reports, step.parents, step.account, step.touch)
    parts: list[bytes] = []
    for name, a, dtype in zip(("events", "tops", "fills", "reports", "parents", "account", "touch"), arrays,
                              _dtypes(step.levels), strict=True):  # fmt: skip
        if a.dtype != dtype:
            raise ProtocolError(name, f"dtype {a.dtype} is not the schema's {dtype}")
        raw = np.ascontiguousarray(a).tobytes()
        parts.append(raw + b"\0" * (_pad(len(raw)) - len(raw)))
    head = _HEAD.pack(MAGIC, SCHEMA_VERSION, step.levels, step.account.shape[0], step.session, step.seq, step.now,
                      *(a.shape[0] for a in arrays))  # fmt: skip
    return head + b"\0" * (_pad(len(head)) - len(head)) + b"".join(parts)


def decode_venue_step(data: bytes | bytearray | memoryview) -> VenueStep:
    """The step, its arrays read-only views of ``data``; :class:`ProtocolError` naming the bad field."""
    buf = memoryview(data)
    if len(buf) < _HEAD.size:
        raise ProtocolError("length", f"{len(buf)} bytes is shorter than the {_HEAD.size}-byte header")
    magic, version, levels, _n_sym, session, seq, now, *counts = _HEAD.unpack_from(buf)
    if magic != MAGIC:
        raise ProtocolError("magic", f"{bytes(magic)!r} is not {MAGIC!r}")
    if version != SCHEMA_VERSION:
        raise ProtocolError("schema_version", f"{version}, this reader knows {SCHEMA_VERSION}")
    if not 1 <= levels <= 1000:
        raise ProtocolError("levels", f"{levels} is not in 1..1000")
    at = _pad(_HEAD.size)
    out = []
    for name, n, dtype in zip(("events", "tops", "fills", "reports", "parents", "account", "touch"), counts,
                              _dtypes(levels), strict=True):  # fmt: skip
        size = n * dtype.itemsize
        if at + size > len(buf):
            raise ProtocolError(name, f"{n} records need {size} bytes at offset {at}; the message has {len(buf)}")
        out.append(np.frombuffer(buf, dtype, n, at))
        at += _pad(size)
    if at != len(buf):
        raise ProtocolError("length", f"{len(buf) - at} bytes after the last array")
    events, tops, fills, reports, parents, account, touch = out
    return VenueStep(session, seq, now, events, tops, fills, reports, parents, account, touch, levels=levels)


@dataclass(frozen=True)
class StartParent:
    """``ctx.execute(...)`` as a command; ``pid`` is the id the desk predicted (it must be the one given)."""

    pid: int
    symbol: int
    side: int
    qty: float
    style: str
    twap: TwapSpec | None = None
    routing: RoutingTable | None = None
    theta: float | None = None


@dataclass(frozen=True)
class CancelParent:
    pid: int


Command = StartParent | CancelParent


@dataclass(frozen=True)
class OrderCommands:
    session: int
    seq: int
    now: int
    commands: list[Command] = field(default_factory=list)


def _command_dict(c: Command) -> dict[str, Any]:
    if isinstance(c, CancelParent):
        return {"op": "cancel", "pid": c.pid}
    return {"op": "start", "pid": c.pid, "symbol": c.symbol, "side": c.side, "qty": c.qty, "style": c.style,
            "twap": asdict(c.twap) if c.twap is not None else None,
            "routing": [asdict(r) for r in c.routing.routes] if c.routing is not None else None,
            "theta": c.theta}  # fmt: skip


def encode_order_commands(msg: OrderCommands) -> bytes:
    return orjson.dumps({"v": ORDERS_SCHEMA_VERSION, "session": msg.session, "seq": msg.seq, "now": msg.now,
                         "commands": [_command_dict(c) for c in msg.commands]})  # fmt: skip


def _command(i: int, d: Any) -> Command:
    where = f"commands[{i}]"
    if not isinstance(d, dict):
        raise ProtocolError(where, "must be an object")
    try:
        if d["op"] == "cancel":
            return CancelParent(int(d["pid"]))
        if d["op"] != "start":
            raise ProtocolError(f"{where}.op", f"{d['op']!r} is not start or cancel")
        style = str(d["style"])
        if style not in STYLE_NAMES.values():
            raise ProtocolError(f"{where}.style", f"unknown style {style!r}")
        twap = TwapSpec(**d["twap"]) if d.get("twap") is not None else None
        routing = RoutingTable(tuple(Route(**r) for r in d["routing"])) if d.get("routing") is not None else None
        theta = float(d["theta"]) if d.get("theta") is not None else None
        return StartParent(int(d["pid"]), int(d["symbol"]), int(d["side"]), float(d["qty"]), style, twap, routing,
                           theta)  # fmt: skip
    except KeyError as exc:
        raise ProtocolError(where, f"lacks field {exc}") from None
    except (TypeError, ValueError) as exc:
        if isinstance(exc, ProtocolError):
            raise
        raise ProtocolError(where, str(exc)) from None


def decode_order_commands(data: bytes | bytearray | memoryview) -> OrderCommands:
    try:
        body = orjson.loads(bytes(data))
    except orjson.JSONDecodeError as exc:
        raise ProtocolError("json", str(exc)) from None
    if not isinstance(body, dict):
        raise ProtocolError("json", "expected an object")
    if body.get("v") != ORDERS_SCHEMA_VERSION:
        raise ProtocolError("v", f"{body.get('v')!r}, this reader knows {ORDERS_SCHEMA_VERSION}")
    try:
        session, seq, now = int(body["session"]), int(body["seq"]), int(body["now"])
        commands = body["commands"]
    except (KeyError, TypeError, ValueError) as exc:
        raise ProtocolError("header", f"session, seq, now and commands are required ({exc})") from None
    if not isinstance(commands, list):
        raise ProtocolError("commands", "must be a list")
    return OrderCommands(session, seq, now, [_command(i, c) for i, c in enumerate(commands)])
