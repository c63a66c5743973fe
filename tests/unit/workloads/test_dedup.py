"""The sequence filter that makes at-least-once delivery idempotent: per (topic, key) it accepts a sequence only
above the last accepted one, counts what it drops, and can be seeded after a restart (restore only moves marks
up), so a redelivered suffix of a stream is dropped exactly and nothing new is."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tradeplane.workloads.bus.dedup import SequenceFilter

MD_BTC = "md.binance-usdm.BTCUSDT"
FILLS = "fills.paper"


def test_accepts_increasing_sequences_and_drops_repeats_and_older_ones() -> None:
    f = SequenceFilter()
    assert [f.accept(MD_BTC, "BTCUSDT", s) for s in (10, 11, 11, 5, 30, 29, 31)] == [
        True, True, False, False, True, False, True,
    ]  # fmt: skip
    assert (f.accepted, f.dropped) == (4, 3)
    assert f.dropped_by_topic == {MD_BTC: 3}
    assert f.last(MD_BTC, "BTCUSDT") == 31
    assert f.last(MD_BTC, "ETHUSDT") is None
    assert f.stats() == {"accepted": 4, "dropped": 3, "keys": 1}


def test_topics_and_keys_are_independent_scopes() -> None:
    f = SequenceFilter()
    assert f.accept(MD_BTC, "BTCUSDT", 100)
    assert f.accept(MD_BTC, "ETHUSDT", 1)  # another key: its own sequence
    assert f.accept(FILLS, "BTCUSDT", 1)  # another topic, same key
    assert f.accept(FILLS, None, 1) and f.accept(FILLS, b"raw", 1)  # None and bytes keys are keys too
    assert not f.accept(FILLS, "BTCUSDT", 1)
    assert f.dropped_by_topic == {FILLS: 1}
    assert len(f) == 5


def test_a_restarted_consumer_seeded_from_a_snapshot_drops_the_redelivered_records() -> None:
    before = SequenceFilter()
    for s in range(1, 8):
        before.accept(MD_BTC, "BTCUSDT", s)
    before.accept(FILLS, "ETHUSDT", 3)
    after = SequenceFilter(before.snapshot())  # e.g. what the sink stored last
    redelivered = [5, 6, 7, 8, 9]  # the uncommitted tail comes again, then new records
    assert [s for s in redelivered if after.accept(MD_BTC, "BTCUSDT", s)] == [8, 9]
    assert after.dropped == 3
    assert not after.accept(FILLS, "ETHUSDT", 3)


def test_restore_only_moves_marks_up_and_takes_triples_or_a_mapping() -> None:
    f = SequenceFilter()
    f.accept(MD_BTC, "BTCUSDT", 50)
    f.restore([(MD_BTC, "BTCUSDT", 20), (MD_BTC, "ETHUSDT", 7)])  # 20 < 50: kept at 50
    assert f.last(MD_BTC, "BTCUSDT") == 50 and f.last(MD_BTC, "ETHUSDT") == 7
    f.restore({(MD_BTC, "BTCUSDT"): 60})
    assert f.last(MD_BTC, "BTCUSDT") == 60
    assert not f.accept(MD_BTC, "BTCUSDT", 60) and f.accept(MD_BTC, "BTCUSDT", 61)
    snap = f.snapshot()
    snap[(MD_BTC, "BTCUSDT")] = 0  # a copy: changing it does not touch the filter
    assert f.last(MD_BTC, "BTCUSDT") == 61
    with pytest.raises(TypeError, match=r"seq of \('md.binance-usdm.BTCUSDT', 'BTCUSDT'\) must be an int"):
        f.restore([(MD_BTC, "BTCUSDT", "70")])  # type: ignore[list-item]


def test_forget_restarts_one_topic_only() -> None:
    f = SequenceFilter([(MD_BTC, "BTCUSDT", 9), (MD_BTC, "ETHUSDT", 9), (FILLS, "BTCUSDT", 9)])
    f.forget(MD_BTC)
    assert f.accept(MD_BTC, "BTCUSDT", 1) and f.accept(MD_BTC, "ETHUSDT", 1)
    assert not f.accept(FILLS, "BTCUSDT", 1)


@settings(max_examples=200, deadline=None)
@given(
    lengths=st.lists(st.integers(min_value=0, max_value=15), min_size=1, max_size=4),
    replays=st.lists(st.tuples(st.integers(0, 3), st.integers(0, 20), st.integers(0, 20)), max_size=6),
    gaps=st.lists(st.integers(min_value=1, max_value=1000), min_size=60, max_size=60),
    data=st.data(),
)
def test_an_at_least_once_stream_is_accepted_exactly_once_in_order(
    lengths: list[int], replays: list[tuple[int, int, int]], gaps: list[int], data: st.DataObject
) -> None:
    # each key's stream: strictly increasing, not contiguous sequences (like time_ns stamps)
    streams = {}
    for k, n in enumerate(lengths):
        seqs, s = [], 0
        for g in gaps[:n]:
            s += g
            seqs.append(s)
        streams[f"K{k}"] = seqs
    # deliveries: each key in order, with redelivered ranges spliced in after their end (a rebalance or a
    # restart sends a suffix of what was already seen), keys interleaved arbitrarily
    per_key: dict[str, list[int]] = {}
    for key, seqs in streams.items():
        out = list(seqs)
        for k, a, b in replays:
            if f"K{k}" == key and seqs:
                lo, hi = sorted((a % len(seqs), b % len(seqs)))
                at = out.index(seqs[hi]) + 1
                out[at:at] = seqs[lo : hi + 1]
        per_key[key] = out
    order = data.draw(st.permutations([key for key, out in per_key.items() for _ in out]))
    cursors = dict.fromkeys(per_key, 0)
    f = SequenceFilter()
    accepted: dict[str, list[int]] = {key: [] for key in per_key}
    for key in order:
        seq = per_key[key][cursors[key]]
        cursors[key] += 1
        if f.accept(FILLS, key, seq):
            accepted[key].append(seq)
    assert accepted == streams  # everything once, in order: no loss, no duplicate
    assert f.dropped == sum(len(per_key[k]) - len(streams[k]) for k in per_key)
