"""The resume and dedupe rules of a protocol v1 client, as pure functions (no I/O, no clock).

`protocol/client.py` and the JavaScript client (`protocol/js/giftwire.js`) both follow them
and run the same test vectors (`protocol/js/vectors.json`), except `track_offers`: only the
JavaScript client keeps the pending offers (the Python client leaves them to its user):

- `seq_after_welcome`: where a connection's event numbering stands after its `welcome`;
- `accept`: whether a frame is passed on, and the newest `seq` seen after it;
- `track_offers`: the offers still waiting for an answer (state a client keeps across a
  resume: a resumed connection does not send them again, a fresh one does);
- `backoff_s`: the pause before a reconnection attempt.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

# the `gift.rejected` codes that end an offer (any other rejection leaves it waiting,
# e.g. `accept_balance_full`)
OFFER_ENDED = frozenset({"offer_accepted", "offer_declined", "offer_expired", "offer_not_found",
                         "approval_denied", "operator_voided"})


class Verdict(NamedTuple):
    deliver: bool  # pass the frame on (to a waiting request or as an event)
    last_seq: int  # the newest event seq seen, this frame included


def _seq(msg: Mapping[str, Any]) -> int | None:
    seq = msg.get("seq")
    return seq if isinstance(seq, int) and not isinstance(seq, bool) else None


def seq_after_welcome(welcome: Mapping[str, Any], since: int | None) -> int:
    """Resumed (`since` given and `welcome.recovered`): events continue after `since`;
    otherwise after the server's latest, `welcome.seq`."""
    if since is not None and welcome.get("recovered"):
        return since
    return int(welcome["seq"])


def accept(last_seq: int, msg: Mapping[str, Any], is_reply: bool) -> Verdict:
    """An event (not the reply to a waiting request) whose seq was seen already is dropped.
    Replies always pass (a retried request is answered with the stored event, its original
    seq included), and so do offers: pending offers are state, and a fresh connection gets
    them again with their original seq. Any seq newer than `last_seq` advances it."""
    seq = _seq(msg)
    if seq is None:
        return Verdict(True, last_seq)
    if not is_reply and msg.get("type") != "gift.offer" and seq <= last_seq:
        return Verdict(False, last_seq)
    return Verdict(True, max(seq, last_seq))


def keeps_offers(welcome: Mapping[str, Any], since: int | None) -> bool:
    """Whether the offers known before this connection still stand: only on a recovered
    resume (otherwise the server sends every waiting offer again)."""
    return since is not None and bool(welcome.get("recovered"))


def track_offers(offers: Mapping[str, Mapping[str, Any]], msg: Mapping[str, Any]
                 ) -> dict[str, Mapping[str, Any]]:
    """The offers waiting for an answer after `msg` (a frame passed on), by transfer id: a
    `gift.offer` adds one; `gift.received` (accepted), `gift.voided` (declined, timed out)
    or a `gift.rejected` saying it ended removes it."""
    out = dict(offers)
    kind, tid = msg.get("type"), msg.get("transfer_id")
    if not isinstance(tid, str):
        return out
    if kind == "gift.offer":
        out[tid] = msg
    elif kind in ("gift.received", "gift.voided") or (
            kind == "gift.rejected" and msg.get("code") in OFFER_ENDED):
        out.pop(tid, None)
    return out


def backoff_s(attempt: int, base_s: float, max_s: float, jitter: float) -> float:
    """The pause after failed attempt `attempt` (0 first): `base_s` doubling up to `max_s`,
    times a factor in [0.5, 1.5) (`jitter` is a uniform draw in [0, 1))."""
    return min(base_s * 2.0 ** min(attempt, 62), max_s) * (0.5 + jitter)
