"""A third party's approval of a gift held for it (SPEC table 5: a region may require one
before a gift posts). The approver's word runs the offer flows inline, as a recipient's
accept or decline would run in settlement: `offer_resolve` on the recipient's slot (only
an offer held for approval may be approved or denied), then the sender's steps and the
steps other modules add to an accept (a room's board, a group, a partner's bonus)."""

from __future__ import annotations

from typing import Any

from server.admin.validate import AdminError
from server.gifting.offers import ACCEPT, OfferItem
from server.gifting.steps import StaleTransition
from server.parts import Parts
from server.store.outcomes import Status, status

DECLINE = "decline"


async def decide(p: Parts, recipient: str, tid: str, approve: bool) -> dict[str, Any]:
    """Approve (the gift posts) or deny (it is voided, `reason: denied`); answers what
    happened, or raises the admin error of why nothing did."""
    flow: Any = p.flows.get(ACCEPT if approve else DECLINE)
    item = OfferItem(recipient, tid, "approve" if approve else "deny", "")
    today = await flow.prepare(p.clock.now_ms())
    first, *rest = flow.steps
    call = first.call(item, today)
    reply = await p.scripts[first.script](keys=call[0], args=call[1])
    st, code = status(reply), str(reply[3])
    if st is Status.NOT_FOUND:
        raise AdminError("not_found", "no gift to this user waits for approval with this id")
    if st is Status.REJECTED and code == "recipient_banned":  # it stays held
        raise AdminError("recipient_banned")
    if st is Status.REJECTED:  # accept_balance_full: past the recipient's bound, it stays held
        raise AdminError("amount_too_large", "the recipient's balance would pass "
                                             "GIFTWIRE_AMOUNT_MAX; the gift stays held")
    await first.after(item, reply, today)
    try:
        for step in rest:  # the sender's side and the others' steps: each idempotent
            if item.done:
                break
            step_call = step.call(item, today)
            if step_call is not None:
                await step.after(item, await p.scripts[step.script](keys=step_call[0],
                                                                     args=step_call[1]), today)
    except StaleTransition:  # the sender's step 3 of the gift has not run yet (a worker
        # died between the steps): its retry comes; this decision stands, asked again it ends
        raise AdminError("settling", "the gift is still settling on its sender's side; "
                                     "send the same decision again shortly") from None
    if st is Status.LOST or code:  # resolved before (another way), or past its deadline now
        raise AdminError("offer_resolved", f"the gift was resolved already: {code}")
    return {"recipient": recipient, "transfer_id": tid,
            "outcome": "accepted" if approve else "denied", "replayed": st is Status.EXISTS}
