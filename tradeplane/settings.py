"""Process settings: environment (``TRADEPLANE_*``), an optional YAML config file, and secret files.

Read once at start-up into a frozen object and passed down; nothing reads the environment later.
Secrets (exchange keys, passwords, DSNs that may carry a password) are ``SecretStr``: they print as
``**********``, are redacted from logs, and are accepted only from the environment or from files in the
secrets directory (a mounted Kubernetes Secret) — never from the config file, which tends to get committed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

ENV_PREFIX = "TRADEPLANE_"
CONFIG_ENV = "TRADEPLANE_CONFIG"
SECRETS_DIR_ENV = "TRADEPLANE_SECRETS_DIR"
DEFAULT_SECRETS_DIR = "/var/run/secrets/tradeplane"


class SettingsError(ValueError):
    """Settings could not be loaded; the message names the key and never includes a secret value."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class KafkaSettings(_Section):
    bootstrap_servers: str = Field(default="127.0.0.1:9092", description="Comma-separated host:port list.")
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None

    def client_security(self) -> dict[str, Any]:
        """The librdkafka security settings (empty for PLAINTEXT without SASL): what every workload's
        producer, consumers and admin client need on a secured cluster."""
        out: dict[str, Any] = {}
        if self.security_protocol != "PLAINTEXT":
            out["security.protocol"] = self.security_protocol
        if self.sasl_mechanism is not None:
            out["sasl.mechanism"] = self.sasl_mechanism
        if self.sasl_username is not None:
            out["sasl.username"] = self.sasl_username
        if self.sasl_password is not None:
            out["sasl.password"] = self.sasl_password.get_secret_value()
        return out


class ClickHouseSettings(_Section):
    dsn: SecretStr | None = Field(
        default=None, description="clickhouse://user:password@host:9000/db; a secret because it may hold a password."
    )
    database: str = "tradeplane"


class BinanceSettings(_Section):
    api_key: SecretStr | None = None
    api_secret: SecretStr | None = None
    testnet: bool = Field(default=True, description="Use Binance's testnet endpoints for orders.")


class WorkloadSettings(_Section):
    """One cluster workload process (``tradeplane workload NAME``): its HTTP port, probes and shutdown budget.

    Env names follow the nesting: ``TRADEPLANE_WORKLOAD__HTTP_PORT``. ``options`` holds the workload's own
    keys (``TRADEPLANE_WORKLOAD__OPTIONS__<KEY>`` or ``workload: {options: …}`` in the config file); each
    workload validates them with its own model, so the operator can render one ConfigMap shape for all.
    """

    http_host: str = Field(default="0.0.0.0", description="Address of /healthz, /readyz and /metrics.")
    http_port: int = Field(default=8080, ge=0, le=65535, description="Port of the HTTP endpoints; 0 picks a free one.")
    strategy: str | None = Field(default=None, description="The Strategy this process serves; in every log line.")
    heartbeat_timeout_s: float = Field(
        default=30.0, gt=0, description="/healthz fails when the main loop has not completed a step for this long."
    )
    shutdown_deadline_s: float = Field(
        default=25.0,
        gt=0,
        description="Budget from SIGTERM to exit for the shutdown hooks (under Kubernetes' 30 s grace period).",
    )
    options: dict[str, Any] = Field(default_factory=dict, description="Workload-specific keys.")


class OperatorSettings(_Section):
    """What the operator puts into the objects it renders (``TRADEPLANE_OPERATOR__<KEY>``; the Helm chart sets
    them from its values). The operator itself needs no DSN or exchange key: it only names the Secret."""

    image: str = Field(default="ghcr.io/tradeplane/tradeplane:latest", description="Image of workloads and Ray pods.")
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    ray_image: str = Field(default="", description="Image of Ray pods (needs the rl extra: Ray); '' = image.")
    workload_service_account: str = Field(default="", description="ServiceAccount of workload pods ('' = default).")
    clickhouse_dsn_secret: str = Field(
        default="", description="Secret holding the ClickHouse DSN for the sink ('' = the sink uses embedded chDB)."
    )
    clickhouse_dsn_key: str = Field(default="dsn", description="Key of the DSN in that Secret.")
    ray_namespace: str = Field(default="", description="Namespace of RayService/RayJob objects ('' = the owner's).")
    binance_secret: str = Field(default="binance-credentials", description="Secret with `apiKey` and `apiSecret` "
                                "for live strategies' execute (paper strategies never get it).")  # fmt: skip
    binance_testnet: bool = Field(default=True, description="Live execute talks to Binance's testnet; false = "
                                  "real money (with spec.mode: live).")  # fmt: skip
    models_pvc: str = Field(default="", description="PVC mounted as the model home ('' = an emptyDir).")
    resync_seconds: float = Field(
        default=30.0, gt=0, description="Every object is reconciled at least this often (repairs drift)."
    )
    rollout_tick_seconds: float = Field(
        default=2.0,
        gt=0,
        description="How often rolled-out ModelVersions are checked for a due analysis, a "
        "pause end or a command; bounds how late a rollout step is (docs/rollouts.md).",
    )


class Settings(BaseSettings):
    """All settings of a tradeplane process. Nested keys use ``__`` in env names (``TRADEPLANE_KAFKA__…``)."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid", frozen=True, case_sensitive=False
    )

    home: Path = Field(default=Path(".tradeplane"), description="Local state: embedded store, reports, models.")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = "text"
    namespace: str = Field(default="default", description="Kubernetes namespace the operator watches.")
    bus: Literal["inprocess", "kafka"] = "inprocess"
    store: Literal["chdb", "clickhouse"] = "chdb"
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    clickhouse: ClickHouseSettings = Field(default_factory=ClickHouseSettings)
    binance: BinanceSettings = Field(default_factory=BinanceSettings)
    workload: WorkloadSettings = Field(default_factory=WorkloadSettings)
    operator: OperatorSettings = Field(default_factory=OperatorSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Highest priority first: explicit arguments, environment, secret files, then the config file.
        return (init_settings, env_settings, _SecretFilesSource(settings_cls), _YamlFileSource(settings_cls))

    def secret_values(self) -> list[str]:
        """Every configured secret's plain value, for log redaction."""
        return [s.get_secret_value() for _, s in _walk_secrets(self) if s.get_secret_value()]

    def redacted(self) -> dict[str, Any]:
        """JSON-ready view with secrets masked, for `tradeplane config show`."""
        masked: dict[str, Any] = _mask(self.model_dump(mode="python"))
        return masked


def _mask(value: Any) -> Any:
    if isinstance(value, SecretStr):
        return "**********"
    if isinstance(value, dict):
        return {k: _mask(v) for k, v in value.items()}
    if isinstance(value, Path):
        return str(value)
    return value


def _walk_secrets(model: BaseModel, prefix: str = "") -> list[tuple[str, SecretStr]]:
    out: list[tuple[str, SecretStr]] = []
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, SecretStr):
            out.append((prefix + name, value))
        elif isinstance(value, BaseModel):
            out += _walk_secrets(value, f"{prefix}{name}.")
    return out


def secret_field_paths(cls: type[BaseModel] = Settings, prefix: str = "") -> list[str]:
    """Dotted paths of every secret field, e.g. ``binance.api_secret``."""
    out: list[str] = []
    for name, info in cls.model_fields.items():
        ann = info.annotation
        if ann is not None and "SecretStr" in repr(ann):
            out.append(prefix + name)
        elif isinstance(ann, type) and issubclass(ann, BaseModel):
            out += secret_field_paths(ann, f"{prefix}{name}.")
    return out


class _YamlFileSource(PydanticBaseSettingsSource):
    """The optional config file named by ``TRADEPLANE_CONFIG``; secrets in it are refused."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ returns the whole mapping

    def __call__(self) -> dict[str, Any]:
        path = os.environ.get(CONFIG_ENV)
        if not path:
            return {}
        try:
            with open(path, encoding="utf-8") as fh:
                data = yaml.safe_load(fh) or {}
        except OSError as exc:
            raise SettingsError(f"{CONFIG_ENV}={path}: cannot read: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise SettingsError(f"{path}: not valid YAML: {exc}") from None
        if not isinstance(data, dict):
            raise SettingsError(f"{path}: the config file must be a mapping of settings")
        for dotted in secret_field_paths():
            node: Any = data
            for part in dotted.split("."):
                node = node.get(part) if isinstance(node, dict) else None
            if node is not None:
                env = ENV_PREFIX + dotted.replace(".", "__").upper()
                raise SettingsError(
                    f"{path}: `{dotted}` is a secret and is not accepted from the config file; "
                    f"set {env} or put it in a file of that name in the secrets directory"
                )
        return data


class _SecretFilesSource(PydanticBaseSettingsSource):
    """Files named like the env variables (``TRADEPLANE_BINANCE__API_SECRET``) in the secrets directory.

    A Kubernetes Secret mounted as a volume produces exactly this layout.
    """

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        directory = Path(os.environ.get(SECRETS_DIR_ENV, DEFAULT_SECRETS_DIR))
        if not directory.is_dir():
            return {}
        data: dict[str, Any] = {}
        for dotted in secret_field_paths():
            env = ENV_PREFIX + dotted.replace(".", "__").upper()
            for candidate in (directory / env, directory / env.lower()):
                if candidate.is_file():
                    section, _, key = dotted.rpartition(".")
                    target = data.setdefault(section, {}) if section else data
                    target[key] = candidate.read_text(encoding="utf-8").strip()
                    break
        return data


def load_settings(**overrides: Any) -> Settings:
    """Load settings, turning validation failures into a :class:`SettingsError` without input values."""
    from pydantic import ValidationError

    try:
        return Settings(**overrides)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            key = ".".join(str(p) for p in err["loc"])
            env = ENV_PREFIX + key.replace(".", "__").upper()
            lines.append(f"{key} ({env}): {err['msg']}")
        raise SettingsError("invalid settings:\n  " + "\n  ".join(lines)) from None
