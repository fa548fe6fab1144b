"""How a stored poll or red envelope reads in the protocol (pure)."""

from __future__ import annotations

from typing import Any

import orjson


def poll_view(poll_id: str, h: dict[str, str]) -> dict[str, Any]:
    """A poll hash as `group.poll` shows it (the Lua steps publish the same shape)."""
    options = orjson.loads(h["options"])
    return {"poll": poll_id, "question": h["question"], "options": options,
            "multi": h.get("multi") == "1", "changeable": h.get("changeable") == "1",
            "ends_at_ms": int(h["ends_ms"]), "closed": h.get("closed") == "1",
            "counts": [int(h.get(f"c{i}", 0)) for i in range(len(options))],
            "voters": int(h.get("voters", 0))}


def envelope_view(envelope: str, h: dict[str, str]) -> dict[str, Any]:
    return {"envelope": envelope, "from": h["sender"], "asset": h["asset"],
            "total": int(h["total"]), "shares": int(h["shares"]), "left": int(h["left"]),
            "left_shares": int(h["left_shares"]), "expires_at_ms": int(h["expires_ms"]),
            "state": h.get("state", "open")}
