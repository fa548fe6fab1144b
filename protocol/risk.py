"""Risk-engine messages of protocol v1 (SPEC table 4): what a user is told when the engine
restricts, freezes or bans their account, or lifts it. Requests from an account under a
decision are refused with `error` `risk_restricted` / `risk_frozen` / `risk_banned`; a
blacklisted device is closed with 4011 `device_banned`."""

from __future__ import annotations

from protocol.schema import Field, MessageType

LEVELS = ("low", "medium", "high")
EVIDENCE = {"low": "face_verification", "medium": "phone_bill", "high": "notarization"}
# a case id, `<reason>-<user>-<ms>`, is at most 18 + 64 + 13 characters and two dashes
CASE_ID_MAX = 128

CLIENT_TYPES: tuple[MessageType, ...] = ()

SERVER_TYPES: tuple[MessageType, ...] = (
    MessageType(
        "risk.notice", "server",
        "The risk engine acted on your account (an event of yours): `restricted` (low risk: "
        "one device served too many accounts; this notice is the warning, and gifting stops "
        "until `until_ms`), "
        "`frozen` (medium: an IP cluster gifting one account; gifting and grabbing stop until "
        "`until_ms`), `banned` (high: automated use; permanent, the device blacklisted), or "
        "`lifted` (an appeal succeeded). `appeal` says what evidence the platform needs.",
        (Field("action", "str", "what happened",
               enum=("restricted", "frozen", "banned", "lifted")),
         Field("level", "str", "the rule's risk level", enum=LEVELS),
         Field("reason", "str", "shared_device, ip_cluster, automation_rate, "
               "automation_regular", enum=("shared_device", "ip_cluster", "automation_rate",
                                           "automation_regular")),
         Field("case", "str", "the case id (quote it in an appeal): `<reason>-<user>-<ms>`, "
               "at most 128 characters", max_length=CASE_ID_MAX),
         Field("until_ms", "int", "when it ends by itself (absent: permanent)", False, minimum=0),
         Field("appeal", "str", "the evidence an appeal needs",
               enum=tuple(EVIDENCE.values())),
         Field("seq", "int", "per-user event sequence number", minimum=1))),
)
