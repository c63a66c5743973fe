"""msgspec Structs for the Binance market-data payloads the engine decodes.

One Struct per payload type, holding only the fields the event record needs. They are the schema: msgspec
validates while it parses (types, required fields, the ``e`` literal, value ranges) in C, so the Python
side never checks a field, and the decoder's numba fast path for the flat types (bookTicker, trade,
aggTrade) derives its field table from these same Structs, so the two cannot disagree on what a valid
message is. Choices that keep the hot path cheap:

- Scalar prices and quantities are ``float`` fields although Binance sends them as JSON strings: the
  decoders use ``strict=False``, which lets msgspec parse a string holding a JSON number straight into a
  float (its own correctly rounded parser; ``"abc"``, ``""``, ``"1."`` are rejected, ``"NaN"`` and
  ``"inf"`` are accepted and the decoder rejects non-finite values afterwards). No ``str`` is built.
  The same mode also accepts integers sent as strings, which is harmless for ids and times.
- Level lists (``b``/``a``/``bids``/``asks``) stay :class:`msgspec.Raw`: the decoder joins them for a
  whole batch and parses them in one numba pass, so ~70 levels per diff never become Python objects.
- Structs are ``gc=False``: tens of thousands of them are created per micro-batch and none can form a
  reference cycle, so the garbage collector has no reason to track them.

``e`` is a :data:`~typing.Literal` where it exists, so a payload routed by its stream name but carrying a
different event type fails validation (and is counted malformed) instead of being decoded as the wrong
thing. Spot ``bookTicker`` has no ``e`` (and no ``E``), hence ``None`` defaults.

The routed payload Structs form one tagged union (tag ``_c``, an int class id): the decoder rewrites each
routed line in place so that it reads ``{"_c":<id>,<payload fields>}``, and decodes a whole micro-batch
with one ``decode_lines`` call. Decoding a Struct on its own does not require the tag. Integers are
bounded to what the int64 event slots hold (and times to what fits once converted to ns), so an
out-of-range value is a validation error, never an overflow.

Field names are Binance's single letters; their meaning is in each docstring.
"""

from __future__ import annotations

from typing import Annotated, Final, Literal

import msgspec

#: Key of the class tag the decoder injects into each routed payload (Binance never uses it), so one
#: ``decode_lines`` call over a whole micro-batch decodes a tagged union of all payload types.
TAG_FIELD: Final = "_c"

# Class ids: the tag values, and the decoder's index into PAYLOAD_TYPES (0 = not routed).
DEPTH_UPDATE: Final = 1
BOOK_TICKER: Final = 2
TRADE: Final = 3
AGG_TRADE: Final = 4
KLINE: Final = 5
MARK_PRICE_UPDATE: Final = 6
FORCE_ORDER: Final = 7
DEPTH_SNAPSHOT: Final = 8

#: Epoch milliseconds bounded so that the ×1e6 conversion to nanoseconds cannot overflow int64.
EpochMs = Annotated[int, msgspec.Meta(ge=0, le=9_000_000_000_000)]
#: Exchange sequence ids (update ids, trade ids) are non-negative int64.
SeqId = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
#: Any value that must fit the event record's int64 slots.
Int64 = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]
_NO_RAW = msgspec.Raw(b"")
_NAN = float("nan")


class DepthUpdate(msgspec.Struct, gc=False, tag_field=TAG_FIELD, tag=DEPTH_UPDATE):
    """``depthUpdate``: diff of the L2 book. ``U``/``u`` first/last update id; futures add ``pu`` (the
    previous message's ``u``) and ``T`` (transaction time). ``b``/``a``: ``[[price, qty], ...]``."""

    E: EpochMs
    s: str
    U: SeqId
    u: SeqId
    b: msgspec.Raw
    a: msgspec.Raw
    e: Literal["depthUpdate"] | None = None
    T: EpochMs = 0
    pu: Int64 = -1


class BookTicker(msgspec.Struct, gc=False, tag_field=TAG_FIELD, tag=BOOK_TICKER):
    """``bookTicker``: best bid ``b``/``B`` (price/qty) and ask ``a``/``A``; ``u`` update id.
    Futures add ``e``, ``E`` and ``T``; spot has no timestamp at all."""

    u: SeqId
    s: str
    b: float
    B: float
    a: float
    A: float
    e: Literal["bookTicker"] | None = None
    E: EpochMs = 0
    T: EpochMs = 0


class Trade(msgspec.Struct, gc=False, tag_field=TAG_FIELD, tag=TRADE):
    """``trade``: ``t`` trade id, ``p``/``q`` price/qty, ``T`` trade time, ``m`` buyer is the maker."""

    e: Literal["trade"]
    E: EpochMs
    s: str
    t: SeqId
    p: float
    q: float
    m: bool
    T: EpochMs = 0


class AggTrade(msgspec.Struct, gc=False, tag_field=TAG_FIELD, tag=AGG_TRADE):
    """``aggTrade``: ``a`` aggregate id, ``f``/``l`` first/last trade id, ``p``/``q``, ``T``, ``m``."""

    e: Literal["aggTrade"]
    E: EpochMs
    s: str
    a: SeqId
    p: float
    q: float
    f: SeqId
    l: SeqId  # noqa: E741 (Binance's field name)
    m: bool
    T: EpochMs = 0


class KlineBody(msgspec.Struct, gc=False):
    """The ``k`` object of a kline message: open/close times ``t``/``T``, OHLC ``o h l c``, base volume
    ``v``, quote volume ``q``, taker-buy base volume ``V``, trade count ``n``, closed flag ``x``."""

    t: EpochMs
    T: EpochMs
    o: float
    h: float
    l: float  # noqa: E741 (Binance's field name)
    c: float
    v: float
    x: bool
    n: Int64 = -1
    q: float = _NAN
    V: float = _NAN


class Kline(msgspec.Struct, gc=False, tag_field=TAG_FIELD, tag=KLINE):
    """``kline``: one bar update; only closed bars (``k.x``) become KLINE rows."""

    e: Literal["kline"]
    E: EpochMs
    s: str
    k: KlineBody


class MarkPriceUpdate(msgspec.Struct, gc=False, tag_field=TAG_FIELD, tag=MARK_PRICE_UPDATE):
    """``markPriceUpdate``: mark price ``p``, funding rate ``r`` (``""`` on COIN-M delivery contracts, so it
    stays raw and the decoder maps empty to NaN),
    ``T`` the *next funding time* (not a transaction time, so exchange_ts is ``E`` here)."""

    e: Literal["markPriceUpdate"]
    E: EpochMs
    s: str
    p: float
    r: msgspec.Raw = _NO_RAW
    T: EpochMs = 0


class ForceOrderBody(msgspec.Struct, gc=False):
    """The ``o`` object of a liquidation: side ``S``, average price ``ap``, filled quantity ``z``,
    trade time ``T``."""

    s: str
    S: Literal["BUY", "SELL"]
    ap: float
    z: float
    T: EpochMs


class ForceOrder(msgspec.Struct, gc=False, tag_field=TAG_FIELD, tag=FORCE_ORDER):
    """``forceOrder``: one liquidation order (the symbol lives in ``o.s``)."""

    e: Literal["forceOrder"]
    E: EpochMs
    o: ForceOrderBody


class DepthSnapshot(msgspec.Struct, gc=False, tag_field=TAG_FIELD, tag=DEPTH_SNAPSHOT):
    """REST ``/depth`` answer: ``lastUpdateId``, ``bids``, ``asks``; futures add ``E`` and ``T``. It names
    no symbol: the caller supplies it (see ``snapshot_symbol`` in the decoder)."""

    last_update_id: SeqId = msgspec.field(name="lastUpdateId")
    bids: msgspec.Raw
    asks: msgspec.Raw
    E: EpochMs = 0
    T: EpochMs = 0


class Probe(msgspec.Struct, gc=False):
    """Slow-path view of any message: just enough to route it (envelope, event type, snapshot or spot
    bookTicker shape). Used only for lines the byte-level router could not place."""

    stream: str | None = None
    data: msgspec.Raw = _NO_RAW  # empty: absent (msgspec.Raw cannot be part of a union)
    e: str | None = None
    last_update_id: int | None = msgspec.field(default=None, name="lastUpdateId")
    u: int | None = None
    B: msgspec.Raw = _NO_RAW
    A: msgspec.Raw = _NO_RAW


#: Payload Struct per class id (index 0: the Probe, for lines the router could not place).
PAYLOAD_TYPES: Final[tuple[type[msgspec.Struct], ...]] = (
    Probe,
    DepthUpdate,
    BookTicker,
    Trade,
    AggTrade,
    Kline,
    MarkPriceUpdate,
    ForceOrder,
    DepthSnapshot,
)

#: Every routed payload type; the decoder's batch decoder is ``msgspec.json.Decoder(Payload)``.
Payload = DepthUpdate | BookTicker | Trade | AggTrade | Kline | MarkPriceUpdate | ForceOrder | DepthSnapshot
