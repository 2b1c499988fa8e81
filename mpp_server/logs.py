"""JSON log lines on stderr. A customerId never appears unmasked (`9009********`)."""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}
# Keys whose values are customer ids wherever they appear in a log record's extras.
_CUSTOMER_KEYS = {"customer", "customer_id", "customerId"}
_CUSTOMER_IN_TEXT = re.compile(r'("customerId\s*"\s*:\s*")([^"]*)(")')


def mask_customer(customer_id: str | None) -> str:
    """Keep the first four characters, hide the rest: `900912345678` → `9009********`."""
    if not customer_id:
        return ""
    return customer_id[:4] + "*" * max(0, len(customer_id) - 4)


def mask_customer_ids_in_json(text: str) -> str:
    """Mask every `"customerId": "..."` in a JSON text (request bodies kept for review)."""
    return _CUSTOMER_IN_TEXT.sub(lambda m: m.group(1) + mask_customer(m.group(2)) + m.group(3),
                                 text)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key in _STANDARD or key.startswith("_"):
                continue
            line[key] = mask_customer(str(value)) if key in _CUSTOMER_KEYS else value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def setup_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
