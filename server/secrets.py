"""Development secrets: generated into the data dir on first start, never hard-coded.

The environment (`GIFTWIRE_TOKEN_SECRET`, `GIFTWIRE_ADMIN_KEY`) wins when set, and the file
holds only what the environment does not set (none at all when it sets both): a key in the
file is always a key that works.
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
    generated: tuple[str, ...] = ()  # which of the two were generated just now

    @property
    def created(self) -> bool:
        """This call wrote secrets.json's generated secrets (the first on this data dir)."""
        return bool(self.generated)


GENERATED_BYTES = {"token_secret": 32, "admin_key": 24}  # of randomness, URL-safe base64


def load_or_create(data_dir: Path, token_secret: str = "", admin_key: str = "") -> Secrets:
    given = {"token_secret": token_secret, "admin_key": admin_key}
    path = data_dir / FILE
    stored: dict[str, str] = {}
    if path.exists():
        stored = orjson.loads(path.read_bytes())
    stale = {k: v for k, v in stored.items() if k in given and given[k] and v != given[k]}
    missing = [k for k, v in given.items() if not v and not stored.get(k)]
    if missing or stale:  # the file keeps only keys that work
        keep = {k: v for k, v in stored.items() if k not in stale}
        keep.update((k, secrets.token_urlsafe(GENERATED_BYTES[k])) for k in missing)
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)  # (a new one: private)
        _write(path, keep, fresh=not stored)
        stored = keep
    return Secrets(token_secret or stored["token_secret"], admin_key or stored["admin_key"],
                   tuple(missing))


def _write(path: Path, values: dict[str, str], fresh: bool) -> None:
    """A new file only if none exists (two processes starting on one data dir: the second
    fails rather than write other secrets); a change replaces the file in one rename."""
    if not values:
        path.unlink(missing_ok=True)
        return
    target = path if fresh else path.with_suffix(".tmp")
    flags = os.O_WRONLY | os.O_CREAT | (os.O_EXCL if fresh else os.O_TRUNC)
    fd = os.open(target, flags, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(orjson.dumps(values, option=orjson.OPT_INDENT_2))
    if not fresh:
        os.replace(target, path)
