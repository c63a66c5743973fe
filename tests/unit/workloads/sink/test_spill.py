"""The sink's disk: spilled columns come back exactly (NaN and its bits, int64 ns, unicode, lists, huge ints),
segments are whole or absent after a crash, replay order is write order, and the durable marks only move up
and survive in the state file and in every segment."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tradeplane.workloads.sink.spill import MANIFEST, Marks, SpillDir, decode_columns, encode_columns, read_rejected

NAN_PAYLOAD = np.array([0x7FF8_0000_0000_0ABC], dtype=np.uint64).view(np.float64)[0]  # a NaN with payload bits


def _columns() -> dict[str, Any]:
    lists = np.empty(3, dtype=object)
    lists[:] = [["ofi1", "qi1"], [], ["ü ✓"]]
    floats_of_lists = np.empty(3, dtype=object)
    floats_of_lists[:] = [[0.1, math.nan], [], [-0.0]]
    return {
        "ts": np.array([1_722_470_400_123_456_789, -1, 2**63 - 1], dtype=np.int64),
        "px": np.array([0.1, math.nan, NAN_PAYLOAD]),
        "qty": np.array([-0.0, math.inf, 5e-324]),
        "side": np.array([1, -1, 0], dtype=np.int8),
        "flag": np.array([True, False, True]),
        "kind": np.array([1, 2**31, 2**32 - 1], dtype=np.uint32),
        "venue": np.array(["binance-usdm", "", "ü ✓ unicode"], dtype=object),
        "fixed": np.array(["a", "bb", "ccc"]),  # '<U3', as TableWriter builds string columns from rows
        "names": lists,
        "values": floats_of_lists,
        "big": np.array([2**64 - 1, 0, 7], dtype=object),
    }


def _assert_same(got: dict[str, Any], want: dict[str, Any]) -> None:
    assert list(got) == list(want)
    for name, w in want.items():
        g = got[name]
        assert len(g) == len(w), name
        if w.dtype != object:
            assert g.dtype == w.dtype, name
            assert g.tobytes() == w.tobytes(), name  # bit for bit: NaN payloads, -0.0, ns
        else:
            for a, b in zip(g.tolist(), w.tolist(), strict=True):
                assert json.dumps(a, allow_nan=True) == json.dumps(b, allow_nan=True), name
                assert type(a) is type(b), name


def test_columns_round_trip_exactly() -> None:
    cols = _columns()
    arrays, layout = encode_columns(cols)
    assert all(a.dtype != object for a in arrays.values())  # nothing pickled
    _assert_same(decode_columns(arrays, layout), cols)


def test_a_segment_round_trips_and_segments_replay_in_write_order(tmp_path: Path) -> None:
    spill = SpillDir(tmp_path)
    marks = Marks({("md.v.BTC", 0): 42}, {("md.v.BTC", "BTC"): 7})
    first = spill.write({"trades": _columns(), "fills": {"x": np.arange(2)}}, marks)
    second = spill.write({"fills": {"x": np.arange(3)}}, Marks())
    assert first.tables == {"trades": 3, "fills": 2} and first.rows == 5
    again = SpillDir(tmp_path)  # a restarted process finds them
    found = again.segments()
    assert [s.name for s in found] == [first.name, second.name] and found[0].number < found[1].number
    assert found[0].marks == marks and found[0].token("fills") != found[1].token("fills")
    _assert_same(again.read(found[0], "trades"), _columns())
    assert again.read(found[1], "fills")["x"].tolist() == [0, 1, 2]
    third = again.write({"fills": {"x": np.arange(1)}}, Marks())
    assert third.number > second.number  # numbering continues after a restart
    again.remove(found[0])
    assert [s.name for s in SpillDir(tmp_path).segments()] == [second.name, third.name]


def test_crash_leftovers_are_removed_at_open(tmp_path: Path) -> None:
    spill = SpillDir(tmp_path)
    kept = spill.write({"fills": {"x": np.arange(2)}}, Marks())
    half_deleted = spill.write({"fills": {"x": np.arange(2)}}, Marks())
    (half_deleted.path / MANIFEST).unlink()  # a crash in the middle of remove()
    unfinished = tmp_path / ".tmp-seg-0000000099-abcd"  # a crash in the middle of write()
    unfinished.mkdir()
    (unfinished / "fills.npz").write_bytes(b"torn")
    reopened = SpillDir(tmp_path)
    assert [s.name for s in reopened.segments()] == [kept.name]
    assert not half_deleted.path.exists() and not unfinished.exists()


def test_marks_only_move_up_and_load_from_state_and_segments(tmp_path: Path) -> None:
    marks = Marks({("a", 0): 10}, {("a", "K"): 5})
    marks.merge(Marks({("a", 0): 3, ("a", 1): 4}, {("a", "K"): 2, ("b", None): 1}))
    assert marks.offsets == {("a", 0): 10, ("a", 1): 4} and marks.seq == {("a", "K"): 5, ("b", None): 1}
    spill = SpillDir(tmp_path)
    assert spill.load_marks() == Marks()
    spill.save_marks(marks)
    spill.write({"fills": {"x": np.arange(1)}}, Marks({("a", 0): 20}, {("a", "K"): 9}))  # newer than the state
    loaded = SpillDir(tmp_path).load_marks()
    assert loaded.offsets == {("a", 0): 20, ("a", 1): 4} and loaded.seq == {("a", "K"): 9, ("b", None): 1}
    assert not list(tmp_path.glob(".tmp-*"))


def test_rejected_blocks_are_kept_with_their_reason(tmp_path: Path) -> None:
    spill = SpillDir(tmp_path)
    path = spill.reject("fills", _columns(), "fills.qty (Float64): expected numbers")
    table, cols = read_rejected(path)
    assert table == "fills"
    _assert_same(cols, _columns())
    assert SpillDir(tmp_path).segments() == []  # not a segment: never replayed by itself


@pytest.mark.parametrize("value", [object(), {1, 2}])
def test_a_value_json_cannot_hold_is_refused(value: object) -> None:
    col = np.empty(1, dtype=object)
    col[0] = value
    with pytest.raises(TypeError):
        encode_columns({"x": col})


def test_the_newest_market_state_wins_a_merge_and_survives_the_disk(tmp_path: Path) -> None:
    """Market state is a snapshot, not a per-key maximum: the one taken later (``market_at``) wins, whether it
    sits in state.json or in a segment written after it; marks written before buckets existed load empty."""
    old = {"cum_quote": {"v:ETHUSDT": 9e6}, "last_px": {"v:ETHUSDT": 2500.0}}
    new = {"cum_quote": {"v:ETHUSDT": 1e6}, "last_px": {"v:ETHUSDT": 2400.0}}  # smaller numbers, later state
    marks = Marks({("a", 0): 10}, {}, old, 7)
    marks.merge(Marks({("a", 0): 12}, {}, new, 8))
    assert marks.market == new and marks.market_at == 8
    marks.merge(Marks({("a", 0): 11}, {}, old, 7))  # an older snapshot never replaces a newer one
    assert marks.market == new
    spill = SpillDir(tmp_path)
    spill.save_marks(Marks({("a", 0): 10}, {}, old, 7))
    spill.write({"fills": {"x": np.arange(1)}}, Marks({("a", 0): 12}, {}, new, 8))
    loaded = SpillDir(tmp_path).load_marks()
    assert loaded.market == new and loaded.market_at == 8
    assert Marks.from_json({"offsets": [["a", 0, 3]], "seq": []}) == Marks({("a", 0): 3})
