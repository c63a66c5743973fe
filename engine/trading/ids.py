"""Client order ids derived from the intent: the same intent and leg always name the same order.

Why derived and not random: Binance rejects a ``newClientOrderId`` that is already used by an open order,
so a retried send (timeout, reconnect, crash and replay) of the same intent cannot create a second order;
and after a crash the venue's open orders can be mapped back to the intent that made them. A retry
therefore re-sends the *same* id (there is no retry counter in it). A stop moved by the trailing ladder is
cancelled and re-placed under the same id, which Binance allows once the previous order is no longer open.

Layout: ``PREFIX`` + one leg code + ``_`` + intent id, e.g. ``tpe_3f2a9c0d1b7e4a5f6c8d`` (24 characters for
the contract's 20-hex intent ids), within Binance's ``^[.A-Z:/a-z0-9_-]{1,36}$``.
"""

from __future__ import annotations

import re
from typing import Final

#: Marks our orders among everything else on the account (manual orders, other tools).
PREFIX: Final = "tp"

ENTRY: Final = "entry"
STOP: Final = "stop"
TAKE_PROFIT: Final = "tp"
EXIT: Final = "exit"
ADD1: Final = "add1"
ADD2: Final = "add2"
PARTIAL: Final = "partial"
FLATTEN: Final = "flatten"

#: leg → one-character code (stable: changing one orphans every order in flight).
LEG_CODES: Final[dict[str, str]] = {
    ENTRY: "e",
    STOP: "s",
    TAKE_PROFIT: "t",
    EXIT: "x",
    ADD1: "a",
    ADD2: "b",
    PARTIAL: "p",
    FLATTEN: "f",
}
LEGS: Final = tuple(LEG_CODES)
#: legs that add to the position (entry and add-ons); the rest reduce it.
OPENING_LEGS: Final = frozenset({ENTRY, ADD1, ADD2})
ADD_LEGS: Final = (ADD1, ADD2)

_CODE_LEGS: Final = {code: leg for leg, code in LEG_CODES.items()}
#: Binance's rule for client order ids (spot and USD-M).
BINANCE_CLIENT_ID: Final = re.compile(r"^[.A-Z:/a-z0-9_-]{1,36}$")
_MAX_INTENT_LEN: Final = 36 - len(PREFIX) - 2
_INTENT_ID: Final = re.compile(rf"^[A-Za-z0-9]{{1,{_MAX_INTENT_LEN}}}$")
_PARSE: Final = re.compile(rf"^{PREFIX}([{''.join(_CODE_LEGS)}])_([A-Za-z0-9]{{1,{_MAX_INTENT_LEN}}})$")


def client_order_id(intent_id: str, leg: str) -> str:
    """The order id of ``leg`` of the trade opened by ``intent_id`` (alphanumeric, at most 32 characters)."""
    code = LEG_CODES.get(leg)
    if code is None:
        raise ValueError(f"unknown order leg {leg!r} (known: {', '.join(LEGS)})")
    if not _INTENT_ID.match(intent_id):
        raise ValueError(f"intent id {intent_id!r} must be 1..{_MAX_INTENT_LEN} letters or digits")
    return f"{PREFIX}{code}_{intent_id}"


def parse_client_order_id(coid: str) -> tuple[str, str] | None:
    """(intent_id, leg) of one of our ids; None for anything else (foreign orders, malformed ids)."""
    m = _PARSE.match(coid)
    if m is None:
        return None
    return m.group(2), _CODE_LEGS[m.group(1)]


def is_ours(coid: str, prefix: str = PREFIX) -> bool:
    """Ours when it starts with ``prefix`` (a narrower one selects a subset) and parses as one of our ids."""
    return coid.startswith(prefix) and parse_client_order_id(coid) is not None
