"""The note economy's messages of protocol v1 (seed 002, "Kinds, sets and stock"): the
published odds of a task reward's draw, and redeeming complete sets. Task rewards and
stock refills come from the platform (admin API); the cards they credit arrive as
`balance.changed` events (`task_reward`, `set_redeem`, `set_reward`)."""

from __future__ import annotations

from protocol.schema import ASSET_PATTERN, ID_PATTERN, Field, MessageType, req_id

REDEEM_SETS_MAX = 100  # the protocol's bound; GIFTWIRE_SETS_PER_REDEMPTION_MAX may lower it
KINDS_SHOWN_MAX = 256

_REDEMPTION = Field("redemption", "str", "your id for this redemption (idempotent)",
                    pattern=ID_PATTERN)

CLIENT_TYPES: tuple[MessageType, ...] = (
    MessageType("notes.get", "client",
                "The published odds of a task reward's draw (each card's kind), which kinds are "
                "in stock, and what a complete set is and earns. Replied by `notes.info`.",
                (req_id(),)),
    MessageType("notes.redeem", "client",
                "Redeem complete sets: one card of each set kind per set is burned and the "
                "set's reward granted, in one step. Replied by `notes.redeemed`, or `error` "
                "(`set_incomplete`: fewer than `sets` of some kind; `redemption_id_conflict`: "
                "the id used with another `sets`; `set_reward_full`; `not_registered`). The "
                "balances also change by `balance.changed` events (`set_redeem`, `set_reward`).",
                (req_id(), _REDEMPTION,
                 Field("sets", "int", "sets to redeem (absent: 1)", False, minimum=1,
                       maximum=REDEEM_SETS_MAX))),
)

SERVER_TYPES: tuple[MessageType, ...] = (
    MessageType("notes.info", "server",
                "The reply to `notes.get`: `kinds` lists every note card `{asset, odds, "
                "odds_now, in_stock}` — `odds` the published chance of one card (weight over "
                "the total), `odds_now` the chance with the kinds out of stock left out; "
                "`set_kinds` and `set_reward` `{asset, amount}` per set.",
                (req_id(),
                 Field("kinds", "objects", "every note card's odds", max_length=KINDS_SHOWN_MAX),
                 Field("set_kinds", "strs", "the assets a complete set holds one of",
                       pattern=ASSET_PATTERN, max_length=KINDS_SHOWN_MAX),
                 Field("set_reward", "object", "`{asset, amount}` each set earns"))),
    MessageType("notes.redeemed", "server",
                "Your sets are redeemed (the reply to `notes.redeem`; a repeat of the same id "
                "answers the same, `replayed: true`).",
                (req_id(), _REDEMPTION,
                 Field("sets", "int", "sets redeemed", minimum=1, maximum=REDEEM_SETS_MAX),
                 Field("reward", "object", "`{asset, amount}` granted for them all"),
                 Field("balances", "balances", "your balances of the set's kinds and the "
                       "reward's asset after it"),
                 Field("replayed", "bool", "this id was redeemed before"))),
)
