"""The msgspec path: lines the byte router could not place, and every routed line the fast path declined.

:func:`probe_line` decodes just enough of an unplaced line to route it; :func:`decode_structs` decodes
routed lines with one ``decode_lines`` call per batch into the tagged union of :mod:`.messages`, bisecting
around bad messages so that each is counted alone and no good neighbour is lost.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec
import numpy as np
import numpy.typing as npt

from . import messages as msg
from .columns import I64, Batch
from .routing import CLASS_BY_EVENT, TYPE_NAMES, class_of_token, stream_token
from .scan import gather

# strict=False: JSON strings holding numbers decode into float fields (see messages.py).
_BATCH_DECODER: Final = msgspec.json.Decoder(msg.Payload, strict=False)
DECODERS: Final = tuple(msgspec.json.Decoder(t, strict=False) for t in msg.PAYLOAD_TYPES)
_PROBE: Final = msgspec.json.Decoder(msg.Probe)


def probe_line(batch: Batch, line: int, text: bytes) -> tuple[int, bytes] | None:
    """Slow path for a line the byte router could not place: decode just enough to route it.

    Returns (class, payload JSON), or None after counting the line as unknown or malformed. Envelopes
    are recognised in any key order; bare payloads by ``e``, by the snapshot's ``lastUpdateId``, or by
    the spot bookTicker shape (``u`` with ``B``/``A``, no ``e``). Unknown types are keyed by the stream
    name's type token (``depth20``; ``markPrice[]`` for an array payload) or by ``e``.
    """
    try:
        probe = _PROBE.decode(text)
    except msgspec.ValidationError as exc:
        batch.bad(line, "schema", f"not a market-data object: {exc}")
        return None
    except msgspec.DecodeError as exc:
        batch.bad(line, "json", f"invalid JSON: {exc}")
        return None
    except UnicodeDecodeError as exc:  # msgspec raises this (not DecodeError) for invalid UTF-8 in a string
        batch.bad(line, "json", f"invalid UTF-8 at byte {exc.start}")
        return None
    if probe.stream is not None:
        token = stream_token(probe.stream)
        if not len(probe.data):
            batch.bad(line, "schema", f"stream {probe.stream!r}: envelope without data")
            return None
        payload = bytes(probe.data)
        c = class_of_token(token)
        if c == 0 or not payload.startswith(b"{"):
            batch.unknown_type(line, token if c == 0 else f"{token}[]")
            return None
        return c, payload
    if probe.e is not None:
        c = CLASS_BY_EVENT.get(probe.e, 0)
        if c == 0:
            batch.unknown_type(line, probe.e)
            return None
        return c, text
    if probe.last_update_id is not None:
        return msg.DEPTH_SNAPSHOT, text
    if probe.u is not None and len(probe.B) and len(probe.A):
        return msg.BOOK_TICKER, text
    batch.unknown_type(line, "(untyped)")
    return None


def error_cause(exc: msgspec.ValidationError) -> str:
    """A number that msgspec could not read as a float is a bad number, not a schema problem."""
    text = str(exc)
    return "number" if text.startswith(("Expected `float`", "Number out of range")) else "schema"


def decode_structs(
    batch: Batch, buf: npt.NDArray[np.uint8], starts: I64, ends: I64, lines: I64, cls: npt.NDArray[np.uint8]
) -> tuple[list[Any], I64]:
    """Decode the rewritten lines ``lines`` with one msgspec ``decode_lines`` call over a compact copy;
    on failure bisect, so k bad messages cost O(k log n) extra decoding and no good neighbour is lost.
    Returns the Structs and their batch line indices (in input order)."""
    if not len(lines):
        return [], lines
    packed, at = gather(buf, starts[lines], ends[lines])
    stop = np.append(at[1:], len(packed))
    view = packed.data

    def run(lo: int, hi: int) -> list[Any]:
        if hi - lo == 1:  # one line: a plain decode also accepts a payload that holds a newline
            k = int(lines[lo])
            try:
                return [_BATCH_DECODER.decode(view[at[lo] : stop[lo]])]
            except msgspec.ValidationError as exc:
                batch.bad(k, error_cause(exc), f"{TYPE_NAMES[cls[k]]}: {exc}")
            except msgspec.DecodeError as exc:
                batch.bad(k, "json", f"invalid JSON: {exc}")
            except UnicodeDecodeError as exc:  # invalid UTF-8 inside a string value
                batch.bad(k, "json", f"invalid UTF-8 at byte {exc.start}")
            return [None]
        try:
            objs = _BATCH_DECODER.decode_lines(view[at[lo] : stop[hi - 1]])
            if len(objs) == hi - lo:
                return objs
        except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError):
            pass
        mid = (lo + hi) // 2
        return run(lo, mid) + run(mid, hi)

    objs = run(0, len(lines))
    if len(objs) and any(o is None for o in objs):
        ok = np.fromiter((o is not None for o in objs), dtype=np.bool_, count=len(objs))
        return [o for o in objs if o is not None], lines[ok]
    return objs, lines
