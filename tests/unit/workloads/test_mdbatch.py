"""Market-data micro-batches: real events survive the round trip byte for byte, the bytes follow the documented
layout (checked with ``struct``, independently of the codec), decoding is zero-copy and read-only, and every
kind of malformed input is refused with an MdBatchError naming the field (never misread, never another
exception type)."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tradeplane.engine.events import EVENT_DTYPE, SCHEMA_VERSION, SymbolTable
from tradeplane.engine.replay import iter_capture
from tradeplane.workloads.bus.mdbatch import (
    FIXED_HEADER_SIZE,
    MAGIC,
    MdBatchError,
    decode_md_batch,
    encode_md_batch,
    header_size,
)

VENUE = "binance-usdm"
SYMBOL = "BTCUSDT"
SEQ = 1_723_161_256_298_000_123  # a time_ns()-style sequence, as the ingest stamps it


@pytest.fixture(scope="module")
def events(shared_dir: Path) -> np.ndarray[Any, Any]:
    """The first ~5k events of the real USD-M BTCUSDT capture (depth, snapshot, BBO and trades)."""
    path = shared_dir / "data/binance/ws/usdm_btcusdt_20240808.jsonl.gz"
    first = next(iter_capture(path, SymbolTable(), batch_lines=500))
    assert len(first.events) > 1000
    return first.events


def _patched(data: bytes, offset: int, fmt: str, value: Any) -> bytes:
    buf = bytearray(data)
    struct.pack_into(fmt, buf, offset, value)
    return bytes(buf)


# -- round trip ------------------------------------------------------------------------------------


def test_real_events_round_trip_byte_for_byte(events: np.ndarray[Any, Any]) -> None:
    kinds = set((events["kind"] & 0xFF).tolist())
    assert len(kinds) >= 3  # several event kinds, not one homogeneous slice
    for start in range(0, 1000, 100):
        chunk = events[start : start + 100]
        data = encode_md_batch(chunk, venue=VENUE, symbol=SYMBOL, seq=SEQ + start)
        batch = decode_md_batch(data)
        assert (batch.venue, batch.symbol, batch.seq, batch.schema_version) == (
            VENUE,
            SYMBOL,
            SEQ + start,
            SCHEMA_VERSION,
        )
        assert batch.count == 100 and batch.events.dtype == EVENT_DTYPE
        assert batch.events.tobytes() == chunk.tobytes()  # bitwise, NaN-safe
        for name in EVENT_DTYPE.names or ():
            np.testing.assert_array_equal(batch.events[name], chunk[name])


def test_a_non_contiguous_slice_and_an_empty_batch_round_trip(events: np.ndarray[Any, Any]) -> None:
    strided = events[:200:2]
    assert not strided.flags.c_contiguous
    assert (
        decode_md_batch(encode_md_batch(strided, venue=VENUE, symbol=SYMBOL, seq=1)).events.tobytes()
        == strided.tobytes()
    )
    empty = decode_md_batch(encode_md_batch(events[:0], venue=VENUE, symbol=SYMBOL, seq=2))
    assert empty.count == 0 and empty.seq == 2 and empty.events.dtype == EVENT_DTYPE


@settings(max_examples=60, deadline=None)
@given(
    venue=st.text(min_size=1, max_size=40).filter(lambda s: len(s.encode()) <= 255),
    symbol=st.text(min_size=1, max_size=40).filter(lambda s: len(s.encode()) <= 255),
    seq=st.integers(min_value=0, max_value=2**63 - 1),
    n=st.integers(min_value=0, max_value=5),
)
def test_any_names_and_sequences_round_trip(venue: str, symbol: str, seq: int, n: int) -> None:
    rows = np.zeros(n, EVENT_DTYPE)
    rows["px"] = np.arange(n) + 0.5
    rows["seq"] = np.arange(n) - 3
    data = encode_md_batch(rows, venue=venue, symbol=symbol, seq=seq)
    batch = decode_md_batch(data)
    assert (batch.venue, batch.symbol, batch.seq) == (venue, symbol, seq)
    assert batch.events.tobytes() == rows.tobytes()
    assert len(data) == header_size(venue, symbol) + 64 * n


# -- layout, computed independently ----------------------------------------------------------------


def test_the_bytes_follow_the_documented_layout(events: np.ndarray[Any, Any]) -> None:
    chunk = events[:7]
    data = encode_md_batch(chunk, venue=VENUE, symbol=SYMBOL, seq=SEQ)
    magic, version, hlen, seq, count, record_size, vlen, slen = struct.unpack("<4sHHqIHBB", data[:24])
    assert magic == b"TPMB" == MAGIC
    assert (version, seq, count, record_size) == (SCHEMA_VERSION, SEQ, 7, 64)
    assert (vlen, slen) == (len(VENUE), len(SYMBOL))
    assert data[24 : 24 + vlen] == VENUE.encode() and data[24 + vlen : 24 + vlen + slen] == SYMBOL.encode()
    assert hlen == 48 and hlen % 8 == 0 and hlen >= 24 + vlen + slen  # 24 + 12 + 7 = 43, padded to 48
    assert data[24 + vlen + slen : hlen] == b"\0" * (hlen - 24 - vlen - slen)
    assert len(data) == hlen + 7 * 64
    # records: EVENT_DTYPE's field offsets, little-endian, read back with struct alone
    for i in range(7):
        base = hlen + 64 * i
        kind, sym = struct.unpack_from("<II", data, base)
        exchange_ts, ingest_ts, px, qty, rseq, first_seq, prev_seq = struct.unpack_from("<qqddqqq", data, base + 8)
        assert (kind, sym, exchange_ts, ingest_ts) == tuple(
            int(chunk[i][f]) for f in ("kind", "symbol", "exchange_ts", "ingest_ts")
        )
        assert (px, qty) == (float(chunk[i]["px"]), float(chunk[i]["qty"]))
        assert (rseq, first_seq, prev_seq) == tuple(int(chunk[i][f]) for f in ("seq", "first_seq", "prev_seq"))


def test_records_start_8_byte_aligned_for_any_name_length() -> None:
    for vlen in range(1, 12):
        for slen in (1, 2, 7, 8, 9):
            assert header_size("v" * vlen, "s" * slen) % 8 == 0
            assert header_size("v" * vlen, "s" * slen) >= FIXED_HEADER_SIZE + vlen + slen
    assert header_size("é", "s") == 32  # lengths are UTF-8 bytes: 24 + 2 + 1 = 27 → 32


# -- zero copy ---------------------------------------------------------------------------------------


def test_decode_is_zero_copy_and_read_only(events: np.ndarray[Any, Any]) -> None:
    data = encode_md_batch(events[:50], venue=VENUE, symbol=SYMBOL, seq=SEQ)
    batch = decode_md_batch(data)
    assert np.shares_memory(batch.events, np.frombuffer(data, np.uint8))
    assert not batch.events.flags.writeable and batch.events.flags.aligned
    with pytest.raises(ValueError, match="read-only"):
        batch.events["px"][0] = 1.0
    writable = bytearray(data)
    view = decode_md_batch(writable).events
    assert np.shares_memory(view, np.frombuffer(writable, np.uint8))  # still no copy
    assert not view.flags.writeable  # read-only even over writable memory
    assert decode_md_batch(memoryview(data)).events.tobytes() == events[:50].tobytes()


# -- malformed input ---------------------------------------------------------------------------------


def _good() -> bytes:
    rows = np.zeros(3, EVENT_DTYPE)
    rows["px"] = [1.0, 2.0, 3.0]
    return encode_md_batch(rows, venue=VENUE, symbol=SYMBOL, seq=SEQ)  # header 48 bytes, 3 records


GOOD = _good()

MALFORMED = [
    pytest.param(b"", "length", "shorter than the 24-byte fixed header", id="empty"),
    pytest.param(GOOD[:20], "length", "20 bytes is shorter", id="truncated-fixed-header"),
    pytest.param(GOOD[:40], "length", "shorter than the 48-byte header", id="truncated-names"),
    pytest.param(b"XXXX" + GOOD[4:], "magic", r"expected b'TPMB', got b'XXXX'", id="bad-magic"),
    pytest.param(b'{"e":"depthUpdate","E":1}' + b" " * 200, "magic", "not a market-data batch", id="json-instead"),
    pytest.param(_patched(GOOD, 4, "<H", SCHEMA_VERSION + 1), "schema_version", "newer than this reader", id="newer-version"),
    pytest.param(_patched(GOOD, 4, "<H", 0), "schema_version", "unknown or retired", id="version-0"),
    pytest.param(_patched(GOOD, 6, "<H", 40), "header_len", "40 != 48", id="header-len"),
    pytest.param(_patched(GOOD, 8, "<q", -5), "seq", "negative", id="negative-seq"),
    pytest.param(_patched(GOOD, 20, "<H", 32), "record_size", "32 != 64", id="record-size"),
    pytest.param(_patched(GOOD, 22, "<B", 0), "venue", "empty", id="empty-venue"),
    pytest.param(_patched(GOOD, 23, "<B", 0), "symbol", "empty", id="empty-symbol"),
    pytest.param(_patched(GOOD, 24, "<B", 0xFF), "venue", "not valid UTF-8", id="venue-not-utf8"),
    pytest.param(_patched(GOOD, 24 + 12, "<B", 0xC3), "symbol", "not valid UTF-8", id="symbol-not-utf8"),
    pytest.param(_patched(GOOD, 47, "<B", 1), "padding", "must be zero", id="dirty-padding"),
    pytest.param(GOOD[:-1], "payload", "truncated: count 3 needs 192 bytes of records, got 191", id="truncated-payload"),
    pytest.param(GOOD[:48 + 64], "payload", "truncated: count 3", id="missing-records"),
    pytest.param(_patched(GOOD, 16, "<I", 4), "payload", "count 4 needs 256", id="count-too-high"),
    pytest.param(_patched(GOOD, 16, "<I", 2), "count", "header says 2 records", id="count-too-low"),
    pytest.param(GOOD + b"\0" * 64, "count", "header says 3 records .192 bytes. but 256 bytes follow", id="trailing-bytes"),
]  # fmt: skip


@pytest.mark.parametrize(("data", "field", "message"), MALFORMED)
def test_malformed_batches_are_refused_naming_the_field(data: bytes, field: str, message: str) -> None:
    with pytest.raises(MdBatchError, match=message) as info:
        decode_md_batch(data)
    assert info.value.field == field
    assert str(info.value).startswith(f"md batch {field}: ")
    assert isinstance(info.value, ValueError)


def test_a_non_bytes_input_is_refused() -> None:
    with pytest.raises(MdBatchError, match="expected bytes, got str") as info:
        decode_md_batch("TPMB" * 20)  # type: ignore[arg-type]
    assert info.value.field == "length"


@settings(max_examples=300, deadline=None)
@given(
    cut=st.integers(min_value=0, max_value=len(GOOD)),
    flips=st.lists(st.tuples(st.integers(min_value=0, max_value=len(GOOD) - 1), st.integers(1, 255)), max_size=3),
)
def test_corrupted_bytes_either_decode_or_raise_md_batch_error(cut: int, flips: list[tuple[int, int]]) -> None:
    buf = bytearray(GOOD[:cut])
    for pos, xor in flips:
        if pos < len(buf):
            buf[pos] ^= xor
    try:
        batch = decode_md_batch(bytes(buf))
    except MdBatchError:
        return
    # whatever decodes is self-consistent: the header describes exactly the bytes that were there
    assert len(buf) == header_size(batch.venue, batch.symbol) + 64 * batch.count


@pytest.mark.parametrize(
    ("kwargs", "field", "message"),
    [
        pytest.param({"events": np.zeros(2, np.float64)}, "events", "must be a numpy array of EVENT_DTYPE", id="dtype"),
        pytest.param({"events": [1, 2]}, "events", "got list", id="not-array"),
        pytest.param({"events": np.zeros((2, 2), EVENT_DTYPE)}, "events", "must be 1-D, got 2-D", id="2d"),
        pytest.param({"seq": -1}, "seq", "0..2..63-1, got -1", id="negative-seq"),
        pytest.param({"seq": 2**63}, "seq", "0..2..63-1", id="seq-overflow"),
        pytest.param({"seq": 1.0}, "seq", "got 1.0", id="float-seq"),
        pytest.param({"seq": True}, "seq", "got True", id="bool-seq"),
        pytest.param({"venue": ""}, "venue", "must be 1-255 bytes", id="empty-venue"),
        pytest.param({"symbol": "S" * 256}, "symbol", "got 256", id="long-symbol"),
        pytest.param({"venue": 7}, "venue", "must be a str, got int", id="venue-type"),
    ],
)
def test_encode_refuses_bad_arguments_naming_them(kwargs: dict[str, Any], field: str, message: str) -> None:
    args: dict[str, Any] = {"events": np.zeros(2, EVENT_DTYPE), "venue": VENUE, "symbol": SYMBOL, "seq": 1, **kwargs}
    with pytest.raises(MdBatchError, match=message) as info:
        encode_md_batch(args.pop("events"), **args)
    assert info.value.field == field
