"""The sink's options (``workload.options.*``) and how settings become its Kafka and store clients.

Options are validated once at start (``parse_options``): a bad value stops the process with exit code 3 and
a message naming ``TRADEPLANE_WORKLOAD__OPTIONS__<KEY>``, before anything connects.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final, Literal
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field

from ...settings import ClickHouseSettings, Settings, SettingsError

STORED_PATTERN: Final = "[adfims][dinue]*"
"""The one subscription that covers exactly the stored families — ``md``, ``signals``, ``intents``,
``audit``, ``fills``, ``desk`` — and none of ``venue``, ``orders``, ``dlq``.

Why a character-class pattern: a consumer takes one fnmatch pattern (``subscription_for`` turns it into one
anchored regex, ``^[adfims][dinue].*$``), fnmatch has no alternation, and the first two letters tell the
families apart (``dlq`` is ``d`` + ``l``; ``desk`` is ``d`` + ``e``). A unit test checks it against every
family of ``topics.FAMILIES``, so a new family cannot slip in or out unnoticed; the sink also checks each
record's family, so a broader ``topics`` option still never stores a non-stored family."""


class SinkOptions(BaseModel):
    """``workload.options`` of the sink (``TRADEPLANE_WORKLOAD__OPTIONS__<KEY>``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    store: Literal["server", "chdb"] = Field(
        default="server", description="server: ClickHouse from clickhouse.dsn; chdb: embedded chDB at chdb_path."
    )
    chdb_path: Path | None = Field(default=None, description="chDB data path (default <home>/store).")
    run_id: str = Field(default="cluster", min_length=1, description="Constant run_id column of runtime rows.")
    group: str = Field(default="tradeplane-sink", min_length=1, description="Kafka consumer group.")
    topics: str = Field(
        default=STORED_PATTERN, min_length=1, description="fnmatch pattern of the topics to consume (one regex)."
    )
    vbucket_quote: float | None = Field(default=None, gt=0, description="Volume-bucket size in quote currency "
                                        "(trades.vbucket, the vbuckets view: VPIN, Kyle λ); the operator passes "
                                        "the Strategy's features.volumeBucketUsdt. None: not bucketed.")  # fmt: skip
    max_rows: int = Field(default=50_000, gt=0, description="Flush when this many rows wait in the writers.")
    max_age_ms: int = Field(default=1000, ge=0, description="Flush (and commit) at least this often.")
    max_buffer_rows: int = Field(
        default=200_000, gt=0, description="Rows kept in memory while ClickHouse is down; past it they spill."
    )
    spill_dir: Path | None = Field(default=None, description="Spill segments and state (default <home>/sink).")
    audit_path: Path | None = Field(default=None, description="Also append audit records to this JSONL file.")
    poll_max: int = Field(default=5000, gt=0, description="Records taken per loop step.")
    poll_timeout_s: float = Field(default=0.2, gt=0, le=5, description="Wait for the first record of a step.")
    max_queue: int = Field(default=10_000, gt=0, description="librdkafka prefetch bound per partition.")
    fetch_wait_max_ms: int = Field(default=100, ge=0, description="fetch.wait.max.ms (5-10 on Tansu).")
    metadata_refresh_ms: int = Field(default=5000, gt=0, description="New matching topics are found this often.")
    session_timeout_ms: int = Field(default=45_000, gt=0, description="Consumer session.timeout.ms.")
    heartbeat_interval_ms: int = Field(default=3000, gt=0, description="Consumer heartbeat.interval.ms.")
    retry_attempts: int = Field(default=6, ge=1, description="ClickHouse attempts before StoreUnavailableError.")
    retry_initial_s: float = Field(default=0.2, ge=0, description="First ClickHouse retry delay (doubles).")
    retry_max_s: float = Field(default=4.0, ge=0, description="Longest ClickHouse retry delay.")
    connect_timeout_s: float = Field(default=3.0, gt=0, description="ClickHouse connect timeout.")
    probe_interval_s: float = Field(default=2.0, gt=0, description="How often a down store is probed.")
    drain_budget_s: float = Field(default=0.5, gt=0, description="Catch-up insert time per loop step.")
    kafka_ping_s: float = Field(default=5.0, gt=0, description="How often the loop checks the broker.")


def store_endpoint(ch: ClickHouseSettings) -> dict[str, Any]:
    """host, port, database, user, password from ``clickhouse.dsn`` (``clickhouse://user:pw@host:9000/db``;
    the path's database wins over ``clickhouse.database``). ``SettingsError`` when the DSN is missing or bad."""
    if ch.dsn is None:
        raise SettingsError(
            "clickhouse.dsn (TRADEPLANE_CLICKHOUSE__DSN) is required by the sink with store=server "
            "(or set TRADEPLANE_WORKLOAD__OPTIONS__STORE=chdb)"
        )
    try:
        url = urlsplit(ch.dsn.get_secret_value())
        port = url.port
    except ValueError as exc:
        raise SettingsError(f"clickhouse.dsn (TRADEPLANE_CLICKHOUSE__DSN): not a URL ({exc})") from None
    if url.scheme not in ("clickhouse", "tcp") or not url.hostname:
        raise SettingsError(
            "clickhouse.dsn (TRADEPLANE_CLICKHOUSE__DSN): expected clickhouse://user:password@host:9000/database"
        )
    database = url.path.strip("/") or ch.database
    return {
        "host": url.hostname,
        "port": port or 9000,
        "database": database,
        "user": unquote(url.username) if url.username else "default",
        "password": unquote(url.password) if url.password else "",
    }


def default_path(settings: Settings, given: Path | None, name: str) -> Path:
    """``given``, or ``<home>/<name>``."""
    return given if given is not None else Path(settings.home) / name
