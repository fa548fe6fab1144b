"""Fan groups (SPEC section 4, seed 003): a creator's groups with roles and entry rules,
live chat with history, polls, red envelopes, in-chat gifts, moderation, daily metrics.
Where things are:

    handlers.py             group.* and envelope.* requests at the gateway
    moderation.py           the ad matcher (pure)
    envelopes.py            the red-envelope flows and the refund sweep; the poll tick
    gifts.py                an in-chat gift's group steps (members only; shown once)
    admin.py / audit.py     admin routes / envelopes in the audit
    lua/group_join.lua      where the entry rules (iron fan, level, invite, approval) and
                            capacity are enforced
    lua/group_post.lua      where a message is checked (member, mute, @all, ads, flooding:
                            a warning, then removal), kept and broadcast
    lua/group_manage.lua    where roles, removals, mutes and applications change (logged)
    lua/poll_*.lua          where ballots are counted and polls close
    lua/env_grab.lua        where a red envelope's shares are decided (each ≥ 1, summing
                            to the total), once per member
"""

from __future__ import annotations

from typing import Any

from server.gifting.flow import KIND as GIFT
from server.gifting.offers import ACCEPT
from server.groups import admin, audit, envelopes, gifts, handlers
from server.parts import Parts


def install(p: Parts) -> None:
    p.scripts.load("server.groups")
    p.requests.add("group.join", handlers.join, ("group.snapshot", "group.applied", "error"))
    p.requests.add("group.open", handlers.open_, ("group.snapshot", "error"))
    p.requests.add("group.close", handlers.close, ("group.closed",))
    p.requests.add("group.leave", handlers.leave, ("group.left", "error"))
    p.requests.add("group.state", handlers.state, ("group.snapshot", "error"))
    p.requests.add("group.post", handlers.post, ("group.posted", "error"))
    p.requests.add("group.history", handlers.history, ("group.messages", "error"))
    p.requests.add("group.manage", handlers.manage, ("group.managed", "error"))
    p.requests.add("group.invite", handlers.invite, ("group.invited", "error"))
    p.requests.add("group.poll.create", handlers.poll_create, ("group.poll", "error"))
    p.requests.add("group.vote", handlers.vote, ("group.poll", "error"))
    p.requests.add("group.poll.get", handlers.poll_get, ("group.poll", "error"))
    p.requests.add("envelope.send", handlers.envelope_send, ("envelope.sent", "error"))
    p.requests.add("envelope.grab", handlers.envelope_grab, ("envelope.grabbed", "error"))
    p.flows.add(envelopes.SendFlow(p.scripts, p.settings, p.replies))
    p.flows.add(envelopes.GrabFlow(p.scripts, p.settings, p.replies))
    p.flows.add_step(GIFT, gifts.check_step(p.settings, p.replies), first=True)
    p.flows.add_step(GIFT, gifts.record_step(p.settings))
    p.flows.add_step(ACCEPT, gifts.record_step(p.settings))  # an offer accepted later
    p.periodic.add("envelope-refunds", envelopes.refund_due(p.scripts, p.settings),
                   every_ms=p.settings.group_tick_ms)
    p.periodic.add("poll-ticks", envelopes.poll_ticks(p.scripts, p.settings),
                   every_ms=p.settings.group_tick_ms)
    admin.install(p)
    p.escrow_holders.append(audit.escrow_held)
    p.audits.append((audit.INVARIANT, audit.check_envelopes))

    def setup(gw: Any) -> None:
        gw.ext[handlers.EXT] = handlers.GroupWatch(gw, p)

    p.gateway.append(setup)
