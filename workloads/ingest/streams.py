"""Which streams go on which connection, the combined-stream URL, and when a connection must rotate.

Pure functions, so the plan of connections and the rotation schedule are unit-tested without a socket.

Why a symbol's streams stay together on one connection: a connection is one TCP stream, so the depth
diffs, trades and book tickers of a symbol then arrive in the exchange's send order relative to each other.
Only a symbol with more streams than fit on a connection is split.
"""

from __future__ import annotations

from collections.abc import Sequence

from .backoff import Uniform


def split_streams(streams: Sequence[str], max_per_connection: int) -> list[list[str]]:
    """Pack stream names (``<symbol>@<type>``) onto connections of at most ``max_per_connection`` streams.

    Streams keep their order; all streams of one symbol go on the same connection when they fit on one, and
    a new connection starts when the next symbol's streams would not fit. Duplicates are dropped.
    """
    if max_per_connection < 1:
        raise ValueError(f"max_per_connection must be ≥ 1, got {max_per_connection}")
    groups: dict[str, list[str]] = {}
    for name in dict.fromkeys(streams):
        groups.setdefault(name.split("@", 1)[0].lower(), []).append(name)
    connections: list[list[str]] = []
    current: list[str] = []
    for group in groups.values():
        if current and len(current) + len(group) > max_per_connection:
            connections.append(current)
            current = []
        for name in group:
            if len(current) == max_per_connection:
                connections.append(current)
                current = []
            current.append(name)
    if current:
        connections.append(current)
    return connections


def combined_stream_url(ws_url: str, streams: Sequence[str]) -> str:
    """``<ws_url>/stream?streams=a/b/c``: Binance's combined-stream endpoint (messages arrive wrapped as
    ``{"stream": name, "data": payload}``, which is what tells the decoder the stream of each frame)."""
    if not streams:
        raise ValueError("a connection needs at least one stream")
    return f"{ws_url.rstrip('/')}/stream?streams={'/'.join(streams)}"


def rotation_deadline(opened_at: float, max_age_s: float, jitter_s: float, rng: Uniform) -> float:
    """When a connection opened at ``opened_at`` (seconds, any monotonic clock) must start rotating.

    ``opened_at + max_age_s − uniform(0, jitter_s)``: always before the age limit, and connections opened
    together (at start-up) do not all rotate in the same second.
    """
    if max_age_s <= 0:
        raise ValueError(f"max_age_s must be > 0, got {max_age_s}")
    if not 0 <= jitter_s < max_age_s:
        raise ValueError(f"jitter_s must be in [0, max_age_s), got {jitter_s}")
    return opened_at + max_age_s - (rng.uniform(0.0, jitter_s) if jitter_s > 0 else 0.0)
