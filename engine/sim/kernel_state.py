"""The matching kernel's state: scalar slots, status codes, and the named groups of arrays its helpers share.

Why named tuples of arrays: all of the kernel's state lives in arrays owned by the Python edge
(:mod:`.matching`), and nopython code cannot keep them in an object between calls. A ``NamedTuple`` of
arrays is what numba handles best for this: passed by value as a struct of array views (no copy, no
allocation, no indirection), fields read by name, and functions taking it are cached like any other.

Why several small groups and not one bundle: every array passed to a (non-inlined) njit function costs a
reference-count increment and decrement, ≈ 6 ns per array per call. A bundle of all 36 arrays would add
≈ 0.2 µs to every call, and some helpers run per trade or per message. So the order side that every order
helper needs is one group, :class:`Matcher` (13 arrays, as many as the positional lists it replaces), the
book (:class:`Book`) travels only to the helpers that read prices, the book kernel's own working arrays
(:class:`BookIO`) and the command queue stay in the event loop, the per-slot scratch columns are one
structured array (:data:`SLOT_DTYPE`), and the per-trade and per-message helpers take only what they read.

Why the entry points take one :class:`State` (a numba StructRef holding the groups as plain tuples, built by
:func:`pack`) that :func:`unpack` turns back into the named groups inside nopython code: a strategy waking
every 100 ms calls the kernel ~3.5k times per hour of data. Passed as arrays, the state costs on every call
≈ 2 µs of typing in the dispatcher (≈ 3 µs more as ``NamedTuple``) and ≈ 1.2 µs of unboxing (a MemInfo per
array); a StructRef is unboxed by taking one pointer, and :func:`bind` skips the typing. Together ≈ 0.3 µs.

Cache caveat: numba's on-disk cache only checks a function's own source file. After editing a helper in one
``kernel_*`` module, delete ``engine/**/__pycache__/*.nbi`` and ``*.nbc``, or callers compiled from other
files keep running the old helper.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final, NamedTuple

import numpy as np
from numba import njit, types
from numba.experimental import structref

# --- scalar state ``Matcher.ks`` (int64) -------------------------------------------------------------------------
K_EV: Final = 0  #: next event (index into the exchange-ordered events)
K_CMD_HEAD: Final = 1  #: next command
K_CMD_N: Final = 2  #: commands queued
K_NF: Final = 3  #: fills written
K_NR: Final = 4  #: reports written
K_NACT: Final = 5  #: live orders at the exchange (``active[:n]``: resting limits and untriggered stops)
K_RESP_CUR: Final = 6  #: next response-latency sample (LAT_SEQUENCE)
K_EPOCH: Final = 7  #: book kernel call counter
K_STREAM: Final = 8  #: book events fed so far
K_CANCEL_MISS: Final = 9  #: cancels for orders the exchange did not hold (already done, or not yet arrived)
K_NOW: Final = 10  #: exchange time of the last unit processed
K_MARK: Final = 11  #: trade counter (marks orders already handled for the current trade)
K_NEED: Final = 12  #: outputs the unit the kernel stopped before may need (for the Python edge to size buffers)
K_NT: Final = 13  #: book tops in flight: written, not yet handed to the strategy (``BookIO.tops``)
K_NUSED: Final = 14  #: unfinished orders in the table (in flight or live); the edge adds, the kernel subtracts
K_LOCAL: Final = 15  #: next event not yet received (index into the receive-ordered events)
K_FLOG: Final = 16  #: fills delivered (``Delivery.fills``)
K_RLOG: Final = 17  #: reports delivered (``Delivery.reports``)
K_TLOG: Final = 18  #: rows of the current ``Delivery.tops`` buffer used
K_NEXT_OUT: Final = 19  #: earliest arrival (local ns) of a fill or report in flight; ``BIG`` when none
K_MORE: Final = 20  #: 1 while exchange-ordered events remain beyond the current chunk (the edge refills it)
N_KS: Final = 21

# --- commands (int64 rows of ``Kernel.cmds``: arrival ts, kind, slot, order id) ----------------------------------
CMD_SUBMIT: Final = 1
CMD_CANCEL: Final = 2

# --- status codes ---------------------------------------------------------------------------------------------------
OK: Final = 0  #: reached ``stop_ts`` or the end of the events
ERR_OUTPUT_FULL: Final = 1  #: fills or reports may not fit the next unit (drain or grow), or tops are full (grow)
ERR_LATENCY_EXHAUSTED: Final = 2  #: sequence latency samples may not suffice: refill and call again
ERR_BOOK: Final = 3  #: the book kernel's scratch output overflowed (a bug)
ERR_LOG_FULL: Final = 4  #: a delivered log cannot take what is in flight (``K_NEED`` rows): grow it, call again
ERR_TOPS_LOG_FULL: Final = 5  #: the tops buffer cannot take the tops in flight (``K_NEED``): start a fresh one
ERR_TABLE_FULL: Final = 6  #: more new orders than free slots (``K_NEED`` free)
ERR_BAD_ORDER: Final = 7  #: an order with qty ≤ 0 or an unconfigured symbol (nothing was sent)
ERR_CMDS_FULL: Final = 8  #: the command queue cannot take the new commands (``K_NEED`` rows): grow it
ERR_NEED_EVENTS: Final = 9  #: the chunk of exchange-ordered events is used up and more remain: refill it

#: Gap and resync rows the book kernel may write per message (one gap and two requests, one of each from a
#: pre-snapshot buffer replay, and one of each for a truncated message before it); ``BookIO.g`` and ``.r`` hold
#: this many per message of the longest call.
RECORDS_PER_MESSAGE: Final = 8
#: Book messages per book-kernel call while no own order is live (sizes ``BookIO.g`` and ``.r``).
MAX_BATCH_MESSAGES: Final = 256

EPS: Final = 1e-12  #: quantities at or below this are zero
BIG: Final = np.iinfo(np.int64).max  #: "no limit" for ticks and timestamps


#: Per-slot scratch of the order table (one row per ORDER_DTYPE row of ``OrderTable.orders``).
SLOT_DTYPE: Final = np.dtype(
    [
        ("lvl", "f8"),  # displayed quantity at a resting order's price when last observed (−1: unknown)
        ("traded", "f8"),  # quantity traded at that price since (so a depth drop is not taken for a cancel)
        ("mark", "i8"),  # the last trade (``ks[K_MARK]``) that handled the slot
        ("mid", "f8"),  # mid when the order was sent (each fill's ``mid_at_send``)
    ],
    align=True,
)


class Book(NamedTuple):
    """The exchange-side depth (:class:`~.depth.SimDepth`'s arrays, ``BookSet`` layout), as matching reads it."""

    st: np.ndarray  #: (symbols, kn.N_ST) int64 per-symbol state: sync state, window base, best indices, counts
    bq: np.ndarray  #: bid quantity per (symbol, window index), flattened
    aq: np.ndarray  #: ask quantity per (symbol, window index), flattened
    inv: np.ndarray  #: 1 / tick per symbol
    width: int  #: window width in ticks


class BookIO(NamedTuple):
    """The rest of what the book kernel (``kn.apply_batch``) reads and writes: counters, the pre-snapshot
    buffer, scratch rows for gap and resync records (not read here), and the tops it emits.

    ``tops[:ks[K_NT]]`` are the tops the strategy has not received yet (their ``ingest_ts`` is still ahead of
    its clock): delivery hands them out and moves the rest to the front, so the buffer is the queue of tops in
    flight. ``t_index`` is the book kernel's scratch beside it (same length).
    """

    counters: np.ndarray
    batch_counters: np.ndarray
    touched: np.ndarray
    before: np.ndarray
    buf_i: np.ndarray
    buf_f: np.ndarray
    buf_cap: int
    g: np.ndarray
    r: np.ndarray
    tops: np.ndarray  #: book_top_dtype(levels), one row per applied depth/snapshot message
    t_index: np.ndarray


class OrderTable(NamedTuple):
    """The exchange's order table: one slot per unfinished order, and the live list."""

    orders: np.ndarray  #: ORDER_DTYPE rows, written by the edge at submit and by the kernel afterwards
    used: np.ndarray  #: uint8: 1 while the slot holds an unfinished order (in flight or live); the edge allocates
    slots: np.ndarray  #: SLOT_DTYPE scratch per slot
    active: np.ndarray  #: int64: slots live at the exchange, ``active[:ks[K_NACT]]``, in arrival order


class Outputs(NamedTuple):
    """Fills and reports in flight, in the order produced (counts ``ks[K_NF]``, ``ks[K_NR]``): written by
    matching, moved to the :class:`Delivery` logs once their arrival time is reached."""

    fills: np.ndarray  #: FILL_DTYPE
    reports: np.ndarray  #: ORDER_DTYPE rows as of each status change
    report_ts: np.ndarray  #: int64: when each report reaches the strategy (exchange time + response latency)


class Latency(NamedTuple):
    """The response latency as :meth:`~.latency.LatencyModel.kernel_view` gives it (``LAT_*`` mode)."""

    mode: int
    vals: np.ndarray  #: int64 ns: the constant, the sequence (cursor ``ks[K_RESP_CUR]``), or the series values
    ts: np.ndarray  #: int64 ns: the series' timestamps (LAT_SERIES only)


class Account(NamedTuple):
    """Position from own fills and the fee schedule, per symbol."""

    pos: np.ndarray  #: float64 signed position
    maker_bps: np.ndarray
    taker_bps: np.ndarray


class Queue(NamedTuple):
    """The queue model (see :mod:`.queue`)."""

    model: int
    param: float


class Matcher(NamedTuple):
    """The order side of the kernel, which every order helper takes as ``m``."""

    ks: np.ndarray  #: int64 scalar state (``K_*``)
    table: OrderTable
    out: Outputs
    resp: Latency
    acct: Account
    queue: Queue


class Delivery(NamedTuple):
    """What has reached the strategy: the receive-time cursor, the delivered logs, and its view of the touch.

    The logs only grow, so every :class:`~.matching.Step` is a view into them (no copy per step), and a
    step's rows stay valid after later steps: a log that must grow is replaced by a bigger copy, and the tops
    buffer, which nothing needs once handed out, by a fresh one (old views keep the old arrays alive).
    """

    local_ts: np.ndarray  #: int64 ``ingest_ts`` of the events in receive order (cursor ``ks[K_LOCAL]``)
    fills: np.ndarray  #: FILL_DTYPE, ``fills[:ks[K_FLOG]]`` delivered in local-time order
    reports: np.ndarray  #: ORDER_DTYPE, ``reports[:ks[K_RLOG]]`` delivered in local-time order
    report_ts: np.ndarray  #: int64, when each delivered report arrived
    tops: np.ndarray  #: book_top_dtype rows delivered, ``tops[:ks[K_TLOG]]``
    touch: np.ndarray  #: (symbols, 4) float64 level 0 (bid px, bid qty, ask px, ask qty) of the last top delivered
    marks: np.ndarray  #: (symbols, 3) float64 (bid, ask, mid) of the last delivered touch with both prices finite
    span: np.ndarray  #: int64 [8]: the last step's [start, end) in the events, tops, fills and reports


class Kernel(NamedTuple):
    """Everything one call of the kernel reads and writes."""

    cmds: np.ndarray  #: (n, 4) int64 commands sorted by arrival, ``cmds[ks[K_CMD_HEAD]:ks[K_CMD_N]]`` pending
    book: Book
    io: BookIO
    m: Matcher
    d: Delivery


def bind(kernel: Any, *args: Any) -> Callable[..., Any]:
    """The compiled entry point of the njit function ``kernel`` for exactly the types of ``args`` (compiled,
    or loaded from the disk cache, if new).

    Why: a dispatcher call types every argument before it runs anything, ≈ 80 ns per array in a tuple, so
    ≈ 3 µs for the simulator's state on each of the ~3.5k calls per hour of data a 100 ms strategy makes;
    the entry point only unboxes. The caller must pass arguments of the same types on every call: the
    simulator binds again whenever it replaces an array (:meth:`~.matching.Simulator._set_kernel`), and
    replacements keep their dtype, dimensions and layout. Entry points are kept per argument fingerprint
    (what numba's type of an argument depends on), because typing from Python costs ~1 ms for the state.
    """
    key = (kernel, _fingerprint(args))
    entry = _BOUND.get(key)
    if entry is None:
        entry = _BOUND[key] = kernel.compile(tuple(kernel.typeof_pyval(a) for a in args))
    return entry


_BOUND: dict[tuple[Any, ...], Callable[..., Any]] = {}


def _fingerprint(a: Any) -> Any:
    """What numba's type of an argument is made of: an array's dtype (and whether it is an aligned struct),
    dimensions, layout, mutability and alignment; a tuple's items; a :class:`State`'s own type; other
    values' Python type."""
    if isinstance(a, State):
        return a._numba_type_
    if isinstance(a, np.ndarray):
        f = a.flags
        layout = "C" if f.c_contiguous else "F" if f.f_contiguous else "A"
        return a.dtype, a.dtype.isalignedstruct, a.ndim, layout, f.writeable, f.aligned
    if isinstance(a, tuple):
        return tuple(_fingerprint(x) for x in a)
    return type(a)


@structref.register
class StateType(types.StructRef):
    """numba type of :class:`State` (its fields are plain tuples of arrays)."""

    def preprocess_fields(self, fields: Any) -> tuple[tuple[str, Any], ...]:
        return tuple((name, types.unliteral(typ)) for name, typ in fields)  # type: ignore[no-untyped-call]


class State(structref.StructRefProxy):
    """The kernel's state as one object for its entry points: the groups of :class:`Kernel` as plain tuples."""


structref.define_proxy(State, StateType, ["cmds", "book", "io", "m", "d"])  # type: ignore[no-untyped-call]


@njit(cache=True)
def _state(cmds: np.ndarray, book: Any, io: Any, m: Any, d: Any) -> State:
    return State(cmds, book, io, m, d)  # type: ignore[no-untyped-call]


def _plain(g: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(_plain(x) if isinstance(x, tuple) else x for x in g)


def pack(k: Kernel) -> State:
    """The groups as one :class:`State` for the entry points (see the module docstring for why)."""
    return _state(k.cmds, _plain(k.book), _plain(k.io), _plain(k.m), _plain(k.d))


@njit(cache=True)
def unpack(s: Any) -> Kernel:
    """The named groups of a :class:`State`, inside nopython code."""
    m = s.m
    matcher = Matcher(m[0], OrderTable(*m[1]), Outputs(*m[2]), Latency(*m[3]), Account(*m[4]), Queue(*m[5]))
    return Kernel(s.cmds, Book(*s.book), BookIO(*s.io), matcher, Delivery(*s.d))
