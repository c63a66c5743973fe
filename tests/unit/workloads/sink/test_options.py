"""The sink's options: the default subscription covers exactly the stored families, the ClickHouse DSN and
the Kafka security settings become client arguments, and bad values name their env variable."""

from __future__ import annotations

import fnmatch
import re

import pytest

from tradeplane.settings import Settings, SettingsError
from tradeplane.workloads.bus.kafka import subscription_for
from tradeplane.workloads.bus.outbox import STORED_FAMILIES
from tradeplane.workloads.bus.topics import DLQ, FAMILIES, MD
from tradeplane.workloads.service.main import parse_options
from tradeplane.workloads.sink.options import STORED_PATTERN, SinkOptions, store_endpoint


def test_the_default_pattern_subscribes_to_exactly_the_stored_families() -> None:
    stored = {MD, *STORED_FAMILIES}
    regex = re.compile(subscription_for(STORED_PATTERN))
    for family, parts in FAMILIES.items():
        topic = ".".join([family, *("x" for _ in parts)])
        if family == DLQ:
            topic = "dlq.md"
        want = family in stored
        assert fnmatch.fnmatchcase(topic, STORED_PATTERN) is want, family
        assert bool(regex.fullmatch(topic)) is want, family  # what librdkafka gets


def test_defaults_and_env_strings() -> None:
    opts = parse_options(Settings(workload={"options": {"max_rows": "10", "store": "chdb"}}), SinkOptions)
    assert opts.max_rows == 10 and opts.store == "chdb" and opts.run_id == "cluster"
    assert opts.max_buffer_rows == 200_000 and opts.max_age_ms == 1000 and opts.topics == STORED_PATTERN


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_rows": 0}, "workload.options.max_rows (TRADEPLANE_WORKLOAD__OPTIONS__MAX_ROWS)"),
        ({"store": "mysql"}, "workload.options.store (TRADEPLANE_WORKLOAD__OPTIONS__STORE)"),
        ({"spil_dir": "/x"}, "workload.options.spil_dir (TRADEPLANE_WORKLOAD__OPTIONS__SPIL_DIR)"),
    ],
)
def test_bad_options_name_their_env_variable(options: dict[str, object], message: str) -> None:
    with pytest.raises(SettingsError, match=re.escape(message)):
        parse_options(Settings(workload={"options": options}), SinkOptions)


def test_store_endpoint_from_the_dsn() -> None:
    ch = Settings(clickhouse={"dsn": "clickhouse://writer:p%40ss@ch-0.ch:9440/trading"}).clickhouse
    assert store_endpoint(ch) == {
        "host": "ch-0.ch", "port": 9440, "database": "trading", "user": "writer", "password": "p@ss",
    }  # fmt: skip
    bare = Settings(clickhouse={"dsn": "clickhouse://ch", "database": "tp"}).clickhouse
    assert store_endpoint(bare) == {"host": "ch", "port": 9000, "database": "tp", "user": "default", "password": ""}
    with pytest.raises(SettingsError, match=r"clickhouse\.dsn \(TRADEPLANE_CLICKHOUSE__DSN\) is required"):
        store_endpoint(Settings().clickhouse)
    with pytest.raises(SettingsError, match="expected clickhouse://"):
        store_endpoint(Settings(clickhouse={"dsn": "http://ch:8123"}).clickhouse)


def test_kafka_security_settings() -> None:
    assert Settings().kafka.client_security() == {}
    kafka = Settings(kafka={"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512",
                            "sasl_username": "sink", "sasl_password": "pw"}).kafka  # fmt: skip
    assert kafka.client_security() == {
        "security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "sink",
        "sasl.password": "pw",
    }  # fmt: skip
