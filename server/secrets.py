"""Development secrets: generated into the data dir on first start, never hard-coded.

The environment (`GIFTWIRE_TOKEN_SECRET`, `GIFTWIRE_ADMIN_KEY`) wins when set.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import orjson

FILE = "secrets.json"


@dataclass(frozen=True)
class Secrets:
    token_secret: str
    admin_key: str
    created: bool = False


def load_or_create(data_dir: Path, token_secret: str = "", admin_key: str = "") -> Secrets:
    path = data_dir / FILE
    stored: dict[str, str] = {}
    if path.exists():
        stored = orjson.loads(path.read_bytes())
    created = False
    if not stored:
        data_dir.mkdir(parents=True, exist_ok=True)
        stored = {"token_secret": secrets.token_urlsafe(32), "admin_key": secrets.token_urlsafe(24)}
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(orjson.dumps(stored, option=orjson.OPT_INDENT_2))
        created = True
    return Secrets(token_secret or stored["token_secret"], admin_key or stored["admin_key"], created)
