"""Platform-signed tokens. Pure: the clock is passed in.

A token is `v1.<user>.<expires_s>.<signature>` where the signature is
base64url(HMAC-SHA256(secret, "v1.<user>.<expires_s>")). The platform backend
signs them with the shared secret; `giftwire token` makes development ones.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass

from server.gifting.rules import is_valid_id

VERSION = "v1"


@dataclass(frozen=True)
class TokenError:
    reason: str  # a close reason of protocol.errors: auth_invalid | auth_expired
    detail: str


def _sign(secret: str, payload: str) -> str:
    mac = hmac.new(secret.encode(), payload.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def make_token(secret: str, user: str, expires_s: int) -> str:
    if not is_valid_id(user):
        raise ValueError(f"invalid user id {user!r}")
    payload = f"{VERSION}.{user}.{expires_s}"
    return f"{payload}.{_sign(secret, payload)}"


def verify_token(secret: str, token: str, now_s: float) -> str | TokenError:
    """The user id the token proves, or why it proves nothing."""
    parts = token.split(".")
    if len(parts) != 4 or parts[0] != VERSION:
        return TokenError("auth_invalid", "malformed token")
    _, user, expires, signature = parts
    payload = f"{VERSION}.{user}.{expires}"
    if not hmac.compare_digest(_sign(secret, payload), signature):
        return TokenError("auth_invalid", "bad signature")
    if not is_valid_id(user) or not (expires.isascii() and expires.isdigit()) or len(expires) > 12:
        return TokenError("auth_invalid", "malformed token")
    if int(expires) <= now_s:
        return TokenError("auth_expired", "token expired")
    return user
