"""Cooldowns per (symbol, side), de-duplication by intent id, hot cooldown length, bounded memory."""

from __future__ import annotations

import pytest

from tradeplane.engine.decision.cooldown import Cooldowns

S = 1_000_000_000
H = 3600 * S
LONG, SHORT = 1, -1


def test_record_blocks_the_same_symbol_and_side_until_the_cooldown_ends() -> None:
    cd = Cooldowns(30 * S)
    assert cd.blocked_until("BTCUSDT", LONG, 0) == 0
    assert cd.record("BTCUSDT", LONG, "i1", 100 * S) == 130 * S
    assert cd.blocked_until("BTCUSDT", LONG, 100 * S) == 130 * S
    assert cd.blocked_until("BTCUSDT", LONG, 130 * S - 1) == 130 * S
    assert cd.blocked_until("BTCUSDT", LONG, 130 * S) == 0  # the end is exclusive: free at exactly +30 s
    # the other direction and other symbols are independent
    assert cd.blocked_until("BTCUSDT", SHORT, 100 * S) == 0
    assert cd.blocked_until("ETHUSDT", LONG, 100 * S) == 0


def test_zero_cooldown_never_blocks() -> None:
    cd = Cooldowns(0)
    assert cd.record("BTCUSDT", LONG, "i1", 5) == 5
    assert cd.blocked_until("BTCUSDT", LONG, 5) == 0


def test_duplicates_by_intent_id() -> None:
    cd = Cooldowns(30 * S)
    assert not cd.is_duplicate("i1")
    cd.record("BTCUSDT", LONG, "i1", 0)
    assert cd.is_duplicate("i1") and not cd.is_duplicate("i2")


def test_hot_cooldown_change_applies_to_running_cooldowns() -> None:
    cd = Cooldowns(60 * S)
    cd.record("BTCUSDT", LONG, "i1", 0)
    assert cd.blocked_until("BTCUSDT", LONG, 20 * S) == 60 * S
    cd.set_cooldown(10 * S)  # shortened: the entry 20 s ago no longer blocks
    assert cd.blocked_until("BTCUSDT", LONG, 20 * S) == 0
    cd.set_cooldown(120 * S)  # lengthened: blocks again, until entry + 120 s
    assert cd.blocked_until("BTCUSDT", LONG, 20 * S) == 120 * S
    assert cd.cooldown_ns == 120 * S
    with pytest.raises(ValueError, match="cooldown_ns"):
        cd.set_cooldown(-1)
    with pytest.raises(ValueError, match="cooldown_ns"):
        Cooldowns(-1)


@pytest.mark.parametrize(
    ("cooldown", "memory"), [(30 * S, H), (2 * H, 2 * H)], ids=["short-keeps-1h", "long-keeps-cooldown"]
)
def test_ids_are_forgotten_after_max_of_cooldown_and_one_hour(cooldown: int, memory: int) -> None:
    cd = Cooldowns(cooldown)
    assert cd.memory_ns == memory
    cd.record("BTCUSDT", LONG, "old", 0)
    cd.record("ETHUSDT", LONG, "edge", memory)  # exactly the horizon: "old" is not older than it yet
    assert cd.is_duplicate("old")
    cd.record("ETHUSDT", SHORT, "later", memory + 1)
    assert not cd.is_duplicate("old") and cd.is_duplicate("edge") and cd.is_duplicate("later")


def test_memory_is_bounded() -> None:
    cd = Cooldowns(30 * S)
    for t in range(20_000):  # one entry per second for 5.5 h
        cd.record("BTCUSDT", LONG if t % 2 else SHORT, f"i{t}", t * S)
    assert len(cd) == 3601  # the last hour, both ends included
    assert cd.is_duplicate("i19999") and not cd.is_duplicate("i16398")


def test_a_rerecorded_id_moves_to_its_new_time() -> None:
    cd = Cooldowns(30 * S)
    cd.record("BTCUSDT", LONG, "a", 0)
    cd.record("BTCUSDT", LONG, "b", 10 * S)
    cd.record("BTCUSDT", LONG, "a", 20 * S)  # same id again (e.g. forced): now the youngest
    cd.record("BTCUSDT", LONG, "c", H + 15 * S)  # forgets "b" (10 s) but keeps "a" (20 s)
    assert not cd.is_duplicate("b") and cd.is_duplicate("a")
