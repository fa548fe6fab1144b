"""One settings object: every bound and default, from the environment and flags.

Each field can be set with `GIFTWIRE_<FIELD>` (upper case). Units are last in
names (`_ms`, `_s`, `_bytes`).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_NOTE_KINDS = ("do", "re", "mi", "fa", "sol", "la", "ti", "rare")


@dataclass(frozen=True)
class Settings:
    # where and how to run
    host: str = "127.0.0.1"
    port: int = 8700
    data_dir: Path = Path("giftwire-data")
    redis_url: str = ""  # empty: start the embedded Valkey server in data_dir
    token_secret: str = ""  # empty: generated into data_dir on first start
    admin_key: str = ""  # empty: generated into data_dir on first start
    log_level: str = "info"

    # assets: one note-card asset per kind (`note.<kind>`), all giftable
    note_kinds: tuple[str, ...] = DEFAULT_NOTE_KINDS
    other_assets: tuple[str, ...] = ("popularity", "small_card", "coin")

    # gifting rules (SPEC section 1, tables 1 and 3)
    timezone: str = "+08:00"  # IANA name or fixed offset ±HH:MM[:SS]
    gifts_per_day: int = 5
    vip_bonus_gifts: int = 2
    pair_gifts_per_day: int = 3
    follow_min_s: int = 3 * 86400
    count_max: int = 999  # cards in one gift
    amount_max: int = 10**12  # any balance; far below 2**53 (Lua numbers are doubles)
    festival_cost_num: int = 6  # festival price = ceil(count * 6 / 5)
    festival_cost_den: int = 5
    newcomer_window_s: int = 7 * 86400
    newcomer_free_cards: int = 5
    mentor_reward_asset: str = "note.do"
    mentor_reward_cards: int = 2
    offer_timeout_s: int = 600
    offers_per_user_max: int = 100

    # gateway bounds
    frame_max_bytes: int = 4096  # protocol limit: larger frames get an error reply
    ws_max_bytes: int = 65536  # transport limit: larger messages close with 1009
    auth_timeout_s: float = 10.0
    pending_requests_max: int = 64  # per connection, gift requests awaiting a reply
    send_queue_max_bytes: int = 1 << 20  # per connection; a client over it is cut off
    bad_frames_max: int = 1000  # per connection within bad_frames_window_s → close 4009
    bad_frames_window_s: float = 10.0

    # settlement
    partitions: int = 1  # settlement stream partitions (by acting user)
    stream_backlog_max: int = 100_000  # gift.send is refused with `overloaded` above it
    worker_batch_max: int = 256
    worker_block_ms: int = 200
    claim_idle_ms: int = 15_000  # a pending entry idle this long is taken over
    sweep_interval_ms: int = 500
    sweep_batch_max: int = 256
    token_ttl_s: int = 86400

    # history bounds
    events_per_user_max: int = 1000
    ledger_page_max: int = 200
    bulk_items_max: int = 10_000

    # fault injection for the crash tests: "kill_after_escrow" SIGKILLs the worker
    # right after the first sender-side step it applies.
    fault: str = ""

    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def note_assets(self) -> tuple[str, ...]:
        return tuple(f"note.{k}" for k in self.note_kinds)

    @property
    def assets(self) -> tuple[str, ...]:
        return self.note_assets + self.other_assets

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


def _parse(value: str, like: Any) -> Any:
    if isinstance(like, bool):
        return value.strip().lower() in ("1", "true", "yes", "on")
    if isinstance(like, int):
        return int(value)
    if isinstance(like, float):
        return float(value)
    if isinstance(like, Path):
        return Path(value)
    if isinstance(like, tuple):
        return tuple(p.strip() for p in value.split(",") if p.strip())
    return value


def from_env(environ: dict[str, str] | None = None, **overrides: Any) -> Settings:
    """Settings from `GIFTWIRE_*` variables (and `REDIS_URL`), then overrides."""
    env = os.environ if environ is None else environ
    base = Settings()
    values: dict[str, Any] = {}
    for f in dataclasses.fields(Settings):
        if f.name == "extra":
            continue
        raw = env.get(f"GIFTWIRE_{f.name.upper()}")
        if raw is not None:
            values[f.name] = _parse(raw, getattr(base, f.name))
    if "redis_url" not in values and env.get("REDIS_URL"):
        values["redis_url"] = env["REDIS_URL"]
    values.update({k: v for k, v in overrides.items() if v is not None})
    return dataclasses.replace(base, **values)
