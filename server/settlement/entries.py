"""The settlement stream entry, as the worker reads it.

Fields: `k` kind (send | accept | decline), `u` acting user, `c` connection and `r`
request number (where the reply goes; empty for entries no one waits on); for a send
`g` gift id, `to`, `a` asset, `n` count, `rm` room; for an offer action `t` transfer id.
"""

from __future__ import annotations

from server.gifting.service import SendRequest
from server.store import keys


def entry_route(f: dict[str, str]) -> str:
    """The reply route of the request behind an entry: connection id `c`, request no `r`."""
    conn, no = f.get("c", ""), f.get("r", "")
    return keys.route(conn, int(no)) if conn and no else ""


def parse_entry(f: dict[str, str]) -> SendRequest | tuple[str, str, str, str]:
    """A stream entry → a send request, or (recipient, transfer id, action, route)."""
    kind = f["k"]
    if kind == "send":
        return SendRequest(sender=f["u"], gift_id=f["g"], to=f["to"], asset=f["a"],
                           count=int(f["n"]), room=f.get("rm", ""), route=entry_route(f))
    if kind in ("accept", "decline"):
        return (f["u"], f["t"], kind, entry_route(f))
    raise ValueError(f"unknown entry kind {kind!r}")
