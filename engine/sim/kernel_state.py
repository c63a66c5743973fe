"""The matching kernel's state: scalar slots, status codes, and the named groups of arrays its helpers share.

Why named tuples of arrays: all of the kernel's state lives in arrays owned by the Python edge
(:mod:`.matching`), and nopython code cannot keep them in an object between calls. A ``NamedTuple`` of
arrays is what numba handles best for this: passed by value as a struct of array views (no copy, no
allocation, no indirection), fields read by name, and functions taking it are cached like any other.

Why several small groups and not one bundle: every array passed to a (non-inlined) njit function costs a
reference-count increment and decrement, ≈ 6 ns per array per call. A bundle of all 28 arrays would add
≈ 0.15 µs to every call, and some helpers run per trade or per message. So the order side that every order
helper needs is one group, :class:`Matcher` (13 arrays, as many as the positional lists it replaces), the
book (:class:`Book`) travels only to the helpers that read prices, the book kernel's own working arrays
(:class:`BookIO`) and the command queue stay in the event loop, the per-slot scratch columns are one
structured array (:data:`SLOT_DTYPE`), and the per-trade and per-message helpers take only what they read.

Why the edge passes plain tuples (:func:`pack`) that :func:`unpack` turns back into the named groups inside
nopython code: numba's dispatcher types a plain tuple of arrays in C, but a ``NamedTuple`` in Python, which
costs ≈ 3 µs more per call; a strategy that calls ``run_until`` for every event would pay that each time.

Cache caveat: numba's on-disk cache only checks a function's own source file. After editing a helper in one
``kernel_*`` module, delete ``engine/**/__pycache__/*.nbi`` and ``*.nbc``, or callers compiled from other
files keep running the old helper.
"""

from __future__ import annotations

from typing import Any, Final, NamedTuple

import numpy as np
from numba import njit

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
K_TOPS_UNSORTED: Final = 15  #: 1 once a top was written with an earlier ``ingest_ts`` than the one before it
N_KS: Final = 16

# --- commands (int64 rows of ``Kernel.cmds``: arrival ts, kind, slot, order id) ----------------------------------
CMD_SUBMIT: Final = 1
CMD_CANCEL: Final = 2

# --- status codes ---------------------------------------------------------------------------------------------------
OK: Final = 0  #: reached ``stop_ts`` or the end of the events
ERR_OUTPUT_FULL: Final = 1  #: fills or reports may not fit the next unit (drain or grow), or tops are full (grow)
ERR_LATENCY_EXHAUSTED: Final = 2  #: sequence latency samples may not suffice: refill and call again
ERR_BOOK: Final = 3  #: the book kernel's scratch output overflowed (a bug)

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
    its clock): the edge hands them out and moves the rest to the front, so the buffer is the queue of tops in
    flight and the usual case costs no copy. ``t_index`` is the book kernel's scratch beside it (same length).
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
    """Fills and reports for the edge to drain after every call (counts ``ks[K_NF]``, ``ks[K_NR]``)."""

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


class Kernel(NamedTuple):
    """Everything one call of the kernel reads and writes."""

    cmds: np.ndarray  #: (n, 4) int64 commands sorted by arrival, ``cmds[ks[K_CMD_HEAD]:ks[K_CMD_N]]`` pending
    book: Book
    io: BookIO
    m: Matcher


def pack(k: tuple[Any, ...]) -> tuple[Any, ...]:
    """The groups as nested plain tuples, for the kernel's entry point (see the module docstring for why)."""
    return tuple(pack(g) if isinstance(g, tuple) else g for g in k)


@njit(cache=True)
def unpack(a: tuple[Any, ...]) -> Kernel:
    """Inverse of :func:`pack` for a :class:`Kernel`, inside nopython code."""
    m = a[3]
    matcher = Matcher(m[0], OrderTable(*m[1]), Outputs(*m[2]), Latency(*m[3]), Account(*m[4]), Queue(*m[5]))
    return Kernel(a[0], Book(*a[1]), BookIO(*a[2]), matcher)
