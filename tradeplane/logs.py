"""Logging set-up: text or JSON lines, with every configured secret redacted from every record.

Redaction works on the final formatted text, so a secret leaks neither through a message argument, an
exception's text nor a traceback.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable

REDACTED = "***"


class SecretRedactingFormatter(logging.Formatter):
    def __init__(self, secrets: Iterable[str], json_lines: bool) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")
        # Longest first, so a secret that contains another is redacted whole.
        self._secrets = sorted({s for s in secrets if s}, key=len, reverse=True)
        self._json = json_lines

    def format(self, record: logging.LogRecord) -> str:
        if self._json:
            payload = {"ts": record.created, "level": record.levelname, "logger": record.name,
                       "msg": record.getMessage()}  # fmt: skip
            if record.exc_info:
                payload["exc"] = self.formatException(record.exc_info)
            text = json.dumps(payload, default=str)
        else:
            text = super().format(record)
        return self.redact(text)

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return text


def configure_logging(level: str, fmt: str, secrets: Iterable[str]) -> None:
    """Install one stderr handler on the root logger (replacing earlier ones from this function)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(SecretRedactingFormatter(secrets, json_lines=fmt == "json"))
    handler.set_name("tradeplane")
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == "tradeplane"]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
