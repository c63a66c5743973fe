"""Options of live execute, and the Binance adapter configuration they make.

Why credentials are not options: options live in a ConfigMap; the API key and secret come from the
environment exactly as :meth:`~..venues.binance_rest.BinanceConfig.from_env` reads them (``BINANCE_API_KEY``,
``BINANCE_API_SECRET``; a mounted Kubernetes Secret), falling back to the process settings' secrets
(``TRADEPLANE_BINANCE__API_KEY`` / ``__API_SECRET``, or the secrets directory). Endpoints default to Binance's
testnet while ``binance.testnet`` (``TRADEPLANE_BINANCE__TESTNET``, default true) is set, so real money
needs two explicit switches: ``spec.mode: live`` and ``testnet: false``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Final

from pydantic import Field

from ...settings import Settings
from ..paper.options import PaperDeskOptions
from ..venues.binance_rest import BinanceConfig

#: market → (REST, listenKey stream, WebSocket API) of Binance's testnets
TESTNET: Final = {
    "spot": ("https://testnet.binance.vision", "wss://stream.testnet.binance.vision/ws",
             "wss://ws-api.testnet.binance.vision/ws-api/v3"),
    "usdm": ("https://testnet.binancefuture.com", "wss://fstream.binancefuture.com/ws", ""),
}  # fmt: skip
MARKETS: Final = {"binance-spot": "spot", "binance-usdm": "usdm"}


class LiveExecuteOptions(PaperDeskOptions):
    """``TRADEPLANE_WORKLOAD__OPTIONS__<KEY>``; the paper options (manifests, account, …) plus these."""

    max_poll: int = Field(default=2_000, ge=1, description="md records per loop step at most.")
    slice_ms: float = Field(default=10.0, gt=0, le=500, description="How long one loop step waits for venue "
                            "reports (and for commands) when nothing is due.")  # fmt: skip
    report_every_ms: float = Field(default=0.0, ge=0, description="At most one venue report per this interval "
                                   "(0: at once).")  # fmt: skip
    cancel_on_shutdown: bool = Field(default=True, description="At shutdown, cancel the working children (and "
                                     "stop their parents) before closing.")  # fmt: skip
    unknown_resolve_s: float = Field(default=5.0, gt=0, description="A submit the adapter could not resolve is "
                                     "queried by order_status until then; not found by then = rejected.")  # fmt: skip
    binance_base_url: str = Field(default="", description="REST base URL (default: production, or testnet).")
    binance_ws_url: str = Field(default="", description="User-data listenKey stream base (``…/ws``).")
    binance_ws_api_url: str = Field(default="", description="Spot WebSocket API (``…/ws-api/v3``).")
    binance_stream_api: str = Field(default="auto", pattern="^(auto|ws-api|listen-key)$")
    binance_timeout_s: float = Field(default=10.0, gt=0, description="Per HTTP request.")
    binance_settle_s: float = Field(default=0.2, ge=0, description="Wait after an ambiguous failure.")
    binance_poll_interval_s: float = Field(default=1.0, gt=0, description="Order polling while the stream is down.")
    binance_recv_window_ms: int = Field(default=5000, gt=0, le=60000)
    seed_account: bool = Field(default=True, description="At start, take the account's positions from the venue "
                               "(futures positionRisk; spot holdings of the base assets, entered at the first mid) "
                               "instead of starting flat.")  # fmt: skip
    credentials_prefix: str = Field(default="BINANCE_", description="Env prefix of API_KEY / API_SECRET.")


def binance_config(opts: LiveExecuteOptions, settings: Settings, venue: str, symbols: tuple[str, ...],
                   env: Mapping[str, str] | None = None) -> BinanceConfig:  # fmt: skip
    """The adapter's configuration for the desk's venue and symbols (see the module docstring)."""
    market = MARKETS.get(venue)
    if market is None:
        raise ValueError(f"live mode needs a Binance venue ({', '.join(MARKETS)}), the desk trades on {venue!r}")
    src = dict(os.environ if env is None else env)
    p = opts.credentials_prefix
    for name, secret in (("API_KEY", settings.binance.api_key), ("API_SECRET", settings.binance.api_secret)):
        if not src.get(p + name) and secret is not None:
            src[p + name] = secret.get_secret_value()
    base, ws, ws_api = TESTNET[market] if settings.binance.testnet else ("", "", "")
    return BinanceConfig.from_env(
        market, env=src, prefix=p, symbols=symbols,
        base_url=opts.binance_base_url or base, ws_url=opts.binance_ws_url or ws,
        ws_api_url=opts.binance_ws_api_url or ws_api, stream_api=opts.binance_stream_api,
        timeout_s=opts.binance_timeout_s, settle_s=opts.binance_settle_s,
        poll_interval_s=opts.binance_poll_interval_s, recv_window_ms=opts.binance_recv_window_ms,
    )  # fmt: skip
