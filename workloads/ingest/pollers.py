"""Funding and open interest, polled over REST and turned into the same events as the websocket data.

Why funding goes through the engine decoder: a ``premiumIndex`` entry holds exactly what a
``markPriceUpdate`` websocket message holds (mark price, funding rate, next funding time, event time), so
it is rewritten into that message and decoded with everything else; the MARK events are then identical to
those of a ``markPrice`` stream. Open interest has no websocket form and no decoder, so its
OPEN_INTEREST events are built here directly (one per poll and symbol: a handful a minute).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import orjson

from ...engine.events import OPEN_INTEREST, EventArray, SymbolTable, empty_events

_MS = 1_000_000


class PollError(ValueError):
    """A poll answer without the fields the event needs; the message names the endpoint and the field."""


def mark_price_payloads(doc: Any, symbols: Iterable[str]) -> list[bytes]:
    """``markPriceUpdate`` messages (raw JSON, as the websocket sends them) from a ``premiumIndex`` answer.

    ``doc`` is the list Binance returns without a ``symbol`` parameter (or one entry with it); entries of
    other symbols are skipped. Missing fields raise :class:`PollError` naming them.
    """
    wanted = set(symbols)
    entries = doc if isinstance(doc, list) else [doc]
    out: list[bytes] = []
    for entry in entries:
        if not isinstance(entry, Mapping):
            raise PollError(f"premiumIndex: expected objects, got {entry!r:.80}")
        symbol = entry.get("symbol")
        if symbol not in wanted:
            continue
        try:
            message = {
                "e": "markPriceUpdate",
                "E": int(entry["time"]),
                "s": symbol,
                "p": str(entry["markPrice"]),
                "i": str(entry.get("indexPrice", "")),
                "P": str(entry.get("estimatedSettlePrice", "")),
                "r": str(entry.get("lastFundingRate", "")),
                "T": int(entry["nextFundingTime"]),
            }
        except KeyError as exc:
            raise PollError(f"premiumIndex {symbol}: field {exc.args[0]!r} missing") from None
        except (TypeError, ValueError) as exc:
            raise PollError(f"premiumIndex {symbol}: {exc}") from None
        out.append(orjson.dumps(message))
    return out


def open_interest_events(
    answers: Iterable[Mapping[str, Any]], symbols: SymbolTable, venue: str, ingest_ts: int
) -> EventArray:
    """OPEN_INTEREST events from ``openInterest`` answers (``{"openInterest", "symbol", "time"}``):
    qty = open interest in base units, exchange_ts = ``time``, seq 0, first_seq 0, prev_seq −1."""
    rows = list(answers)
    ev = empty_events(len(rows))
    for i, doc in enumerate(rows):
        try:
            ev[i]["symbol"] = symbols.intern(venue, str(doc["symbol"]))
            ev[i]["qty"] = float(doc["openInterest"])
            ev[i]["exchange_ts"] = int(doc["time"]) * _MS
        except KeyError as exc:
            raise PollError(f"openInterest: field {exc.args[0]!r} missing in {dict(doc)!r:.120}") from None
        except (TypeError, ValueError) as exc:
            raise PollError(f"openInterest {doc.get('symbol')}: {exc}") from None
    ev["kind"] = OPEN_INTEREST
    ev["ingest_ts"] = ingest_ts
    ev["px"] = 0.0
    ev["seq"] = 0
    ev["first_seq"] = 0
    ev["prev_seq"] = -1
    if not np.all(np.isfinite(ev["qty"])):
        raise PollError("openInterest: a value is not a finite number")
    return ev
