"""The in-process bus: topic names, synchronous delivery in global publish order (also for records published
by handlers), per-topic offsets, keys kept, bounded pull consumers with backpressure that loses nothing,
read-only numpy payloads, and handler failures that neither starve other handlers nor lose records."""

from __future__ import annotations

import fnmatch
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tradeplane.workloads.bus import (
    BackpressureError,
    Bus,
    InProcessBus,
    Record,
    audit_topic,
    fills_topic,
    intents_topic,
    md_topic,
    parse_topic,
    signals_topic,
    validate_topic,
)

MD_BTC = "md.binance-usdm.BTCUSDT"
MD_ETH = "md.binance-usdm.ETHUSDT"
FILLS = "fills.paper"
SIGNALS = "signals.usdm-btc"


def recorder(bus: InProcessBus, pattern: str) -> list[Record]:
    got: list[Record] = []
    bus.subscribe(pattern, got.append)
    return got


# -- topics ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("built", "expected", "parts"),
    [
        pytest.param(md_topic("binance-spot", "BTCUSDT"), "md.binance-spot.BTCUSDT",
                     {"venue": "binance-spot", "symbol": "BTCUSDT"}, id="md"),
        pytest.param(signals_topic("spot-majors"), "signals.spot-majors", {"strategy": "spot-majors"}, id="signals"),
        pytest.param(intents_topic("usdm-btc"), "intents.usdm-btc", {"strategy": "usdm-btc"}, id="intents"),
        pytest.param(fills_topic("paper"), "fills.paper", {"account": "paper"}, id="fills"),
        pytest.param(audit_topic("usdm_btc2"), "audit.usdm_btc2", {"strategy": "usdm_btc2"}, id="audit"),
    ],
)  # fmt: skip
def test_topic_builders_and_parse(built: str, expected: str, parts: dict[str, str]) -> None:
    assert built == expected
    assert parse_topic(built) == (expected.split(".")[0], parts)
    assert validate_topic(built) == built


@pytest.mark.parametrize(
    ("topic", "message"),
    [
        pytest.param("", "non-empty", id="empty"),
        pytest.param("trades.x", "unknown family 'trades'", id="unknown-family"),
        pytest.param("md.binance-spot", "does not have the shape md.<venue>.<symbol>", id="md-missing-symbol"),
        pytest.param("signals.a.b", r"shape signals.<strategy>", id="dot-in-strategy"),
        pytest.param("fills.", "account '' is not a valid topic part", id="empty-part"),
        pytest.param("audit.my strategy", "not a valid topic part", id="space"),
        pytest.param("signals." + "x" * 101, "not a valid topic part", id="part-too-long"),
        pytest.param("md." + "v" * 100 + "." + "s" * 100 + ".x" * 30, "longer than 249", id="topic-too-long"),
    ],
)
def test_invalid_topics_are_refused_naming_them(topic: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        validate_topic(topic)


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda: md_topic("binance.spot", "BTCUSDT"), id="dot-in-venue"),
        pytest.param(lambda: signals_topic(""), id="empty-strategy"),
        pytest.param(lambda: fills_topic("acct/1"), id="slash"),
    ],
)
def test_builders_refuse_bad_parts(call: Any) -> None:
    with pytest.raises(ValueError, match="not a valid topic part"):
        call()


# -- push delivery ---------------------------------------------------------------------------------


def test_the_bus_satisfies_the_protocol() -> None:
    bus: Bus = InProcessBus()  # mypy checks the structural match
    assert bus.end_offset(FILLS) == 0


@pytest.mark.parametrize(
    ("pattern", "receives"),
    [
        pytest.param("fills.*", [FILLS], id="family-wildcard"),
        pytest.param("md.*", [MD_BTC, MD_ETH], id="star-crosses-dots"),
        pytest.param("md.*.BTCUSDT", [MD_BTC], id="one-symbol-any-venue"),
        pytest.param("*", [MD_BTC, FILLS, MD_ETH, SIGNALS], id="everything"),
        pytest.param(SIGNALS, [SIGNALS], id="exact"),
        pytest.param("Fills.*", [], id="case-sensitive"),
        pytest.param("md.binance-usdm.[BE]T*", [MD_BTC, MD_ETH], id="character-class"),
    ],
)
def test_patterns_select_topics(pattern: str, receives: list[str]) -> None:
    bus = InProcessBus()
    got = recorder(bus, pattern)
    for topic in (MD_BTC, FILLS, MD_ETH, SIGNALS):
        bus.publish(topic, "BTCUSDT", topic.encode())
    assert [r.topic for r in got] == receives


def test_offsets_are_per_topic_and_keys_and_values_are_kept() -> None:
    bus = InProcessBus()
    got = recorder(bus, "*")
    payload = object()
    assert bus.publish(MD_BTC, "BTCUSDT", b"a") == 0
    assert bus.publish(FILLS, b"\x00raw", payload) == 0
    assert bus.publish(MD_BTC, None, b"b") == 1
    assert bus.publish(MD_BTC, "BTCUSDT", b"c") == 2
    assert [(r.topic, r.key, r.offset) for r in got] == [
        (MD_BTC, "BTCUSDT", 0),
        (FILLS, b"\x00raw", 0),
        (MD_BTC, None, 1),
        (MD_BTC, "BTCUSDT", 2),
    ]
    assert got[1].value is payload  # in-process: the object itself, not a copy
    assert bus.end_offset(MD_BTC) == 3 and bus.end_offset(FILLS) == 1 and bus.end_offset(SIGNALS) == 0
    assert bus.offsets() == {MD_BTC: 3, FILLS: 1}


def test_records_published_by_handlers_are_delivered_after_the_current_one_in_publish_order() -> None:
    bus = InProcessBus()
    log: list[str] = []

    def decide(rec: Record) -> None:  # md → signal (like the decision handler)
        log.append(f"decide:{rec.value}")
        bus.publish(SIGNALS, rec.key, f"sig-{rec.value}")

    def execute(rec: Record) -> None:  # signal → fill
        log.append(f"execute:{rec.value}")
        assert bus.publish(FILLS, rec.key, f"fill-{rec.value}") >= 0

    bus.subscribe("md.*", decide)
    bus.subscribe("signals.*", execute)
    bus.subscribe("*", lambda rec: log.append(f"all:{rec.value}"))
    bus.publish(MD_BTC, "BTCUSDT", "m1")
    assert bus.pending == 0  # the outer publish delivered everything, cascade included
    bus.publish(MD_BTC, "BTCUSDT", "m2")
    assert log == [
        "decide:m1", "all:m1",            # m1 reaches all its handlers before anything it caused
        "execute:sig-m1", "all:sig-m1",
        "all:fill-sig-m1",
        "decide:m2", "all:m2",
        "execute:sig-m2", "all:sig-m2",
        "all:fill-sig-m2",
    ]  # fmt: skip


def test_subscribers_get_only_what_is_published_after_they_subscribe_and_until_they_cancel() -> None:
    bus = InProcessBus()
    bus.publish(FILLS, None, 1)
    got = recorder(bus, "fills.*")
    sub2_got: list[Any] = []
    sub2 = bus.subscribe("fills.*", lambda r: sub2_got.append(r.value))
    bus.publish(FILLS, None, 2)
    sub2.cancel()
    sub2.cancel()  # idempotent
    bus.publish(FILLS, None, 3)
    assert [r.value for r in got] == [2, 3]
    assert sub2_got == [2]


def test_a_subscription_cancelled_by_an_earlier_handler_does_not_get_the_pending_record() -> None:
    bus = InProcessBus()
    late: list[Any] = []
    subs: list[Any] = []
    bus.subscribe("fills.*", lambda r: subs[0].cancel())
    subs.append(bus.subscribe("fills.*", lambda r: late.append(r.value)))
    bus.publish(FILLS, None, "x")
    assert late == []


def test_numpy_payloads_are_read_only_views_for_receivers() -> None:
    bus = InProcessBus()
    got = recorder(bus, "md.*")
    batch = np.arange(4, dtype=np.int64)
    bus.publish(MD_BTC, "BTCUSDT", batch)
    seen = got[0].value
    assert isinstance(seen, np.ndarray) and not seen.flags.writeable
    assert np.shares_memory(seen, batch)  # no copy
    with pytest.raises(ValueError, match="read-only"):
        seen[0] = 99
    assert batch.flags.writeable  # the publisher's array is untouched


def test_a_failing_handler_does_not_starve_the_others_and_pending_records_survive() -> None:
    bus = InProcessBus()
    seen: list[str] = []

    def boom(rec: Record) -> None:
        if rec.value == "bad":
            bus.publish(FILLS, None, "queued-by-failing-handler")
            raise KeyError("boom")

    bus.subscribe("signals.*", boom)
    bus.subscribe("*", lambda r: seen.append(r.value))
    with pytest.raises(KeyError, match="boom") as info:
        bus.publish(SIGNALS, None, "bad")
    assert any("topic 'signals.usdm-btc' offset 0" in note for note in info.value.__notes__)
    assert seen == ["bad"]  # the later handler still got the failing record
    assert bus.pending == 1  # the record the failing handler published waits, not lost
    bus.flush()
    assert seen == ["bad", "queued-by-failing-handler"]
    bus.publish(SIGNALS, None, "ok")
    assert seen[-1] == "ok"


def test_a_closed_bus_refuses_publishing_after_delivering_what_was_pending() -> None:
    bus = InProcessBus()
    seen = recorder(bus, "*")
    bus.close()
    bus.close()
    with pytest.raises(RuntimeError, match="closed"):
        bus.publish(FILLS, None, 1)
    with pytest.raises(RuntimeError, match="closed"):
        bus.subscribe("*", seen.append)
    assert seen == []


def test_an_invalid_topic_publishes_nothing() -> None:
    bus = InProcessBus()
    seen = recorder(bus, "*")
    cons = bus.consumer("*", 4)
    with pytest.raises(ValueError, match="unknown family"):
        bus.publish("trades.BTCUSDT", None, 1)
    assert seen == [] and len(cons) == 0 and bus.offsets() == {}
    loose = InProcessBus(validate_topics=False)
    assert loose.publish("anything goes", None, 1) == 0


# -- pull consumers --------------------------------------------------------------------------------


def test_consumer_polls_in_publish_order_in_batches() -> None:
    bus = InProcessBus()
    cons = bus.consumer("fills.*", max_queue=10, name="store-writer")
    for i in range(5):
        bus.publish(FILLS, "BTCUSDT", i)
    bus.publish(MD_BTC, "BTCUSDT", "ignored")
    assert len(cons) == 5
    assert [r.value for r in cons.poll(2)] == [0, 1]
    assert [(r.value, r.offset) for r in cons.poll()] == [(2, 2), (3, 3), (4, 4)]
    assert cons.poll() == [] and cons.poll(0) == []
    with pytest.raises(ValueError, match="max_n"):
        cons.poll(-1)


def test_backpressure_names_topic_and_consumer_and_loses_nothing() -> None:
    bus = InProcessBus()
    pushed = recorder(bus, "*")
    slow = bus.consumer("fills.*", max_queue=3, name="slow-writer")
    fast = bus.consumer("*", max_queue=100, name="fast")
    for i in range(3):
        bus.publish(FILLS, None, i)
    with pytest.raises(BackpressureError, match=r"topic 'fills.paper': consumer 'slow-writer' has 3") as info:
        bus.publish(FILLS, None, 3)
    err = info.value
    assert (err.topic, err.consumer, err.max_queue) == (FILLS, "slow-writer", 3)
    # the refused record was not published anywhere; the queued ones are intact
    assert bus.end_offset(FILLS) == 3 and len(fast) == 3 and [r.value for r in pushed] == [0, 1, 2]
    bus.publish(MD_BTC, None, "other topics still flow")
    assert [r.value for r in slow.poll(1)] == [0]
    assert bus.publish(FILLS, None, 3) == 3  # the retry gets the next offset
    assert [r.value for r in slow.poll()] == [1, 2, 3]
    assert [r.value for r in fast.poll()] == [0, 1, 2, "other topics still flow", 3]


def test_consumer_registration_rules() -> None:
    bus = InProcessBus()
    a = bus.consumer("*", 1)
    b = bus.consumer("*", 2)
    assert a.name != b.name
    with pytest.raises(ValueError, match="already exists"):
        bus.consumer("*", 1, name=a.name)
    with pytest.raises(ValueError, match="max_queue"):
        bus.consumer("*", 0)
    with pytest.raises(ValueError, match="pattern"):
        bus.consumer("", 1)
    bus.publish(FILLS, None, 1)
    a.close()
    a.close()
    assert len(a) == 0
    bus.publish(FILLS, None, 2)  # a closed consumer no longer applies backpressure
    assert [r.value for r in b.poll()] == [1, 2]
    assert bus.consumer("*", 1, name=a.name).name == a.name  # the name is free again


TOPICS = [MD_BTC, MD_ETH, FILLS, SIGNALS, "intents.usdm-btc", "audit.usdm-btc"]
PATTERNS = ["*", "md.*", "fills.*", "*.usdm-btc", "md.*.ETHUSDT"]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from(TOPICS), max_size=60))
def test_every_receiver_sees_exactly_its_topics_in_publish_order(topics: list[str]) -> None:
    bus = InProcessBus()
    pushed = {p: recorder(bus, p) for p in PATTERNS}
    pulled = {p: bus.consumer(p, max_queue=100) for p in PATTERNS}
    for i, topic in enumerate(topics):
        bus.publish(topic, str(i), i)
    for p in PATTERNS:
        expected = [i for i, t in enumerate(topics) if fnmatch.fnmatchcase(t, p)]
        assert [r.value for r in pushed[p]] == expected
        assert [r.value for r in pulled[p].poll(1000)] == expected
    for topic in TOPICS:
        offsets = [r.offset for r in pushed["*"] if r.topic == topic]
        assert offsets == list(range(topics.count(topic)))
        assert bus.end_offset(topic) == topics.count(topic)


def test_md_pattern_names_the_one_venue_or_every_md_topic() -> None:
    from tradeplane.workloads.bus.topics import md_pattern

    assert md_pattern(["binance-usdm", "binance-usdm"]) == "md.binance-usdm.*"
    assert md_pattern(["binance-usdm", "binance-spot"]) == "md.*"
    with pytest.raises(ValueError, match="venue"):
        md_pattern(["bad venue"])
