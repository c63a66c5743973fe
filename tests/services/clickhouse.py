"""A real ClickHouse server for tests: Debian's ``clickhouse-server`` 18.16 with a throwaway config and data dir.

It gives the native protocol that ``clickhouse-driver`` speaks in production. 18.16 is old (no DateTime64, TTL,
codecs), so code under test detects ``server_version`` and leaves those clauses out; the modern engine is
exercised through embedded chDB instead (``chdb.session.Session(path)``, no server needed).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from tests.services._process import LOCALHOST, Service, free_ports, port_open, which

CONFIG_XML = """<?xml version="1.0"?>
<yandex>
    <logger>
        <level>information</level>
        <log>{log}</log>
        <errorlog>{errlog}</errorlog>
        <size>100M</size>
        <count>1</count>
    </logger>
    <listen_host>{host}</listen_host>
    <tcp_port>{tcp_port}</tcp_port>
    <http_port>{http_port}</http_port>
    <max_connections>256</max_connections>
    <keep_alive_timeout>3</keep_alive_timeout>
    <max_concurrent_queries>64</max_concurrent_queries>
    <uncompressed_cache_size>268435456</uncompressed_cache_size>
    <mark_cache_size>268435456</mark_cache_size>
    <path>{data}/</path>
    <tmp_path>{data}/tmp/</tmp_path>
    <user_files_path>{data}/user_files/</user_files_path>
    <format_schema_path>{data}/format_schemas/</format_schema_path>
    <users_config>users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <timezone>UTC</timezone>
    <mlock_executable>false</mlock_executable>
    <max_session_timeout>3600</max_session_timeout>
    <default_session_timeout>60</default_session_timeout>
</yandex>
"""

# A passwordless ``default`` user reachable from 127.0.0.1 only, with the stock default profile and quota.
USERS_XML = """<?xml version="1.0"?>
<yandex>
    <profiles>
        <default>
            <max_memory_usage>4000000000</max_memory_usage>
            <use_uncompressed_cache>0</use_uncompressed_cache>
            <load_balancing>random</load_balancing>
        </default>
    </profiles>
    <users>
        <default>
            <password></password>
            <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
            <profile>default</profile>
            <quota>default</quota>
        </default>
    </users>
    <quotas>
        <default>
            <interval>
                <duration>3600</duration>
                <queries>0</queries>
                <errors>0</errors>
                <result_rows>0</result_rows>
                <read_rows>0</read_rows>
                <execution_time>0</execution_time>
            </interval>
        </default>
    </quotas>
</yandex>
"""


class ClickHouseServer(Service):
    """clickhouse-server on free 127.0.0.1 TCP (native) and HTTP ports, data under the workdir."""

    name = "clickhouse"

    def __init__(self, workdir: Path | None = None) -> None:
        super().__init__(workdir)
        self.host = LOCALHOST
        self.port, self.http_port = free_ports(2)
        self._version: tuple[int, ...] | None = None

    @classmethod
    def attach(cls, host: str, port: int) -> ClickHouseServer:
        """A server someone else runs (``TRADEPLANE_TEST_CLICKHOUSE_HOST``/``_PORT``); we only probe it."""
        server = cls()
        server.external = True
        server.host, server.port = host, port
        return server

    @property
    def config_path(self) -> Path:
        """The generated server config (its ``users.xml`` sits next to it)."""
        return self.workdir / "config.xml"

    def extra_logs(self) -> list[Path]:
        return [self.workdir / "clickhouse-server.log", self.workdir / "clickhouse-server.err.log"]

    def _start(self) -> None:
        data = self.workdir / "data"
        for sub in ("tmp", "user_files", "format_schemas"):
            (data / sub).mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(
            CONFIG_XML.format(
                log=escape(str(self.workdir / "clickhouse-server.log")),
                errlog=escape(str(self.workdir / "clickhouse-server.err.log")),
                host=self.host,
                tcp_port=self.port,
                http_port=self.http_port,
                data=escape(str(data)),
            )
        )
        (self.workdir / "users.xml").write_text(USERS_XML)
        self.launch("clickhouse-stdout", [which("clickhouse-server"), f"--config-file={self.config_path}"])

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``clickhouse_driver.Client`` (host, port, user)."""
        return {"host": self.host, "port": self.port, "user": "default", "password": ""}

    def client(self, **kwargs: Any) -> Any:
        """A new ``clickhouse_driver.Client``; extra kwargs (``settings=...``) pass through."""
        from clickhouse_driver import Client  # only imported when a ClickHouse test runs

        return Client(**{"connect_timeout": 2, "send_receive_timeout": 30, **self.client_kwargs(), **kwargs})

    def wait_ready(self, timeout: float = 60.0) -> ClickHouseServer:
        """Ready when ``SELECT 1`` answers over the native protocol."""
        self.poll_until(lambda: port_open(self.port, self.host), timeout, f"TCP {self.host}:{self.port}")
        # Short socket timeouts: a port held by something else must not stall each probe for 30 s.
        self.poll_until(
            lambda: self.client(connect_timeout=1, send_receive_timeout=2).execute("SELECT 1") == [(1,)],
            timeout,
            "SELECT 1",
        )
        return self

    @property
    def server_version(self) -> tuple[int, ...]:
        """``SELECT version()`` as ints, e.g. (18, 16, 1): code under test gates TTL/codecs/DateTime64 on it."""
        if self._version is None:
            text = str(self.client().execute("SELECT version()")[0][0])
            self._version = tuple(int(part) for part in text.split(".") if part.isdigit())
        return self._version

    def connection_info(self) -> dict[str, Any]:
        return {"host": self.host, "port": self.port, "http_port": self.http_port}
