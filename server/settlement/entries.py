"""The settlement stream entry: one codec for every kind.

An entry is an envelope (`kind`, acting `user`, and where the reply goes: the
connection `conn` and its request number `request`, both empty when no one waits)
plus the fields its kind's flow declares (`Flow.decode` reads them, the gateway
handler writes them with `encode`). Field names are readable: the stream is what an
operator reads in a dead letter.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from server.store import keys

ENVELOPE = ("kind", "user", "conn", "request")


@dataclass(frozen=True)
class Envelope:
    kind: str
    user: str
    conn: str = ""
    request: int = 0

    @property
    def route(self) -> str:
        """`<conn>/<request no>`, or '' when no request waits for the reply."""
        return keys.route(self.conn, self.request) if self.conn and self.request else ""


def encode(env: Envelope, payload: dict[str, Any]) -> dict[str, str]:
    clash = set(payload) & set(ENVELOPE)
    assert not clash, clash  # a flow's fields never shadow the envelope
    fields = {"kind": env.kind, "user": env.user, "conn": env.conn,
              "request": str(env.request) if env.request else ""}
    fields.update((k, str(v)) for k, v in payload.items())
    return fields


def decode(fields: dict[str, str]) -> Envelope:
    """The envelope of an entry; KeyError or ValueError when it is malformed."""
    request = fields.get("request", "")
    return Envelope(fields["kind"], fields["user"], fields.get("conn", ""),
                    int(request) if request else 0)
