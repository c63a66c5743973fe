"""Small helpers shared by the feature state objects (Python side only, never inside kernels).

Per-symbol kernel state lives in plain numpy arrays indexed by the dense symbol id (``SymbolTable``), so
numba kernels can mutate it in place and a state object can be fed micro-batch after micro-batch. These
helpers grow that state when a batch brings a symbol id beyond the current capacity: one vectorised check
per batch, never a per-event test.
"""

from __future__ import annotations

from typing import TypeVar

import numba
import numpy as np
import numpy.typing as npt

from ..events import EventArray

G = TypeVar("G", bound=np.generic)


def grow(arr: npt.NDArray[G], n_symbols: int, fill: float | int) -> npt.NDArray[G]:
    """Return ``arr`` extended along axis 0 to ``n_symbols`` rows, new rows set to ``fill``."""
    if arr.shape[0] >= n_symbols:
        return arr
    out: npt.NDArray[G] = np.empty((n_symbols, *arr.shape[1:]), dtype=arr.dtype)
    out[: arr.shape[0]] = arr
    out[arr.shape[0] :] = fill
    return out


@numba.njit(cache=True, error_model="numpy")
def _max_id(ids: npt.NDArray[np.uint32]) -> int:
    best = -1
    for i in range(ids.shape[0]):
        if ids[i] > best:
            best = ids[i]
    return best


def max_symbol(*arrays: EventArray | None) -> int:
    """Largest ``symbol`` id in any of the record arrays, or -1 when all are empty or None.

    A compiled loop rather than ``ndarray.max``: on the one-event batches of the latency path numpy's
    reduction setup costs more than the scan.
    """
    best = -1
    for a in arrays:
        if a is not None and a.shape[0]:
            best = max(best, int(_max_id(a["symbol"])))
    return best


def capacity_for(n_needed: int, current: int) -> int:
    """Symbol capacity to allocate for ``n_needed`` ids: at least double, so growth is amortised."""
    return max(n_needed, 2 * current, 4)


def copy_rows(rows: EventArray) -> EventArray:
    """An owned copy of contiguous structured rows, copied as bytes.

    numpy copies structured arrays field by field: ``copy()`` costs ~10 µs of setup per call (it dominated
    the one-event latency) and ~150 ns per 152-byte row (it dominated the whole-day batch). Bytes copy at
    memcpy speed; small copies go through a bytearray to skip the dtype check of ``view``.
    """
    if not rows.flags.c_contiguous:
        rows = np.ascontiguousarray(rows)
    if rows.shape[0] <= 64:
        return np.frombuffer(bytearray(rows.tobytes()), dtype=rows.dtype)
    return rows.view(np.uint8).copy().view(rows.dtype)


def concat_rows(parts: list[EventArray], dtype: np.dtype[np.void]) -> EventArray:
    """``np.concatenate`` for same-dtype structured arrays, at memcpy speed (see :func:`copy_rows`)."""
    raw = [np.ascontiguousarray(p).view(np.uint8) for p in parts if p.shape[0]]
    if not raw:
        return np.zeros(0, dtype)
    return np.concatenate(raw).view(dtype)


def enlarge(buf: EventArray, n: int) -> EventArray:
    """A new buffer of ``n`` rows starting with the rows of ``buf`` (copied as bytes)."""
    bigger = np.empty(n, buf.dtype)
    bigger.view(np.uint8)[: buf.nbytes] = buf.view(np.uint8)
    return bigger
