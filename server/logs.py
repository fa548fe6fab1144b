"""Structured logs: one JSON object per line, with any `extra=` fields (the transfer id on
every line about a gift), so a log pipeline can follow one gift through the system."""

from __future__ import annotations

import logging
import sys
import time

import orjson

# GIFTWIRE_LOG_LEVEL's names (checked at start-up against these: never any attribute of `logging`)
LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
          "error": logging.ERROR, "critical": logging.CRITICAL}
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        line.update((k, v) for k, v in vars(record).items() if k not in _STANDARD)
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


# uvicorn logs a line for every malformed HTTP request: any client could fill the log with
# them, so at most one a window, saying how many were held back
REPEAT_WINDOW_S = 10.0


class OncePerWindow(logging.Filter):
    """Lets one record of each message through per window; the next one says how many of
    that message were dropped meanwhile. A record with a traceback always goes through
    (uvicorn logs every unhandled exception with the same text)."""

    def __init__(self, window_s: float = REPEAT_WINDOW_S) -> None:
        super().__init__()
        self.window_s = window_s
        self.seen: dict[str, tuple[float, int]] = {}  # message → (when let through, dropped)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info:  # a failure with its traceback is a bug to read: never held back
            return True
        key, now = str(record.msg), time.monotonic()
        at, dropped = self.seen.get(key, (-self.window_s, 0))
        if now - at < self.window_s:
            self.seen[key] = (at, dropped + 1)
            return False
        if len(self.seen) > 1000:  # bounded: messages are uvicorn's few fixed texts
            self.seen.clear()
        self.seen[key] = (now, 0)
        if dropped:
            record.repeated = dropped  # (a field of the JSON line)
        return True


def configure(level: str, fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    logging.basicConfig(level=LEVELS.get(level.lower(), logging.INFO), handlers=[handler],
                        force=True)
    uvicorn_errors = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, OncePerWindow) for f in uvicorn_errors.filters):
        uvicorn_errors.addFilter(OncePerWindow())
