"""Connection-level messages of protocol v1: authentication, liveness, errors and
balance reads. Declarations only; the codec is `protocol.schema`, the catalogue
`protocol.messages`."""

from __future__ import annotations

from protocol.schema import Field, MessageType, req_id, user_field

CLIENT_TYPES: tuple[MessageType, ...] = (
    MessageType(
        "auth",
        "client",
        "Authenticate (first message) unless the token was in the query string.",
        (
            req_id(),
            Field("token", "str", "platform-signed token", max_length=512),
            Field("since", "int", "resume: the last event `seq` you saw", False, minimum=0),
        ),
    ),
    MessageType("ping", "client", "Liveness probe; answered by `pong`.", (req_id(),)),
    MessageType("balance.get", "client", "Read your balances. Replied by `balance`.", (req_id(),)),
)

SERVER_TYPES: tuple[MessageType, ...] = (
    MessageType(
        "welcome",
        "server",
        "Authentication succeeded.",
        (
            req_id(False),
            user_field("user", "the authenticated user"),
            Field("protocol", "int", "protocol version", minimum=1),
            Field("server_time_ms", "int", "server clock, Unix ms", minimum=0),
            Field("seq", "int", "your latest event `seq`: live events continue from it", minimum=0),
            Field("recovered", "bool", "when resuming: true if every missed event follows, "
                  "false if the log no longer holds them (re-read your balances)", False),
            Field("channel", "str", "the partner app whose secret signed your token (your gifts "
                  "carry it); absent: the platform's own", False, r"^[a-z0-9_]{1,24}$"),
        ),
    ),
    MessageType("pong", "server", "Reply to `ping`.", (req_id(),)),
    MessageType(
        "error",
        "server",
        "A request was malformed or refused; the connection stays open.",
        (
            req_id(False),
            Field("code", "str", "stable error code"),
            Field("message", "str", "human-readable explanation"),
            Field("temporary", "bool", "true when retrying later may succeed"),
        ),
    ),
    MessageType(
        "balance",
        "server",
        "Reply to `balance.get`.",
        (req_id(), Field("balances", "balances", "asset → amount (absent means 0)")),
    ),
)
