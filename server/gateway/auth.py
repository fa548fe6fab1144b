"""Platform-signed tokens. Pure: the clock is passed in.

A token is `v1.<user>.<expires_s>.<signature>`, or `v2.<user>.<expires_s>.<device>.<signature>`
with the device fingerprint the platform saw (the risk engine's signal), where the signature
is base64url(HMAC-SHA256(secret, everything before it)). v1 tokens stay valid (no device).
The platform backend signs them with the shared secret; a partner app signs its users' tokens
with its own secret, which names the channel their gifts carry. `giftwire token` makes
development ones.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass

from server.gifting.rules import is_valid_id

VERSION = "v1"
VERSION_DEVICE = "v2"  # carries a device fingerprint


@dataclass(frozen=True)
class TokenError:
    reason: str  # a close reason of protocol.errors: auth_invalid | auth_expired
    detail: str


def _sign(secret: str, payload: str) -> str:
    mac = hmac.new(secret.encode(), payload.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


# an expiry is at most 12 digits of Unix seconds (a longer one is refused as malformed)
EXPIRES_MAX_S = 10**12 - 1

def make_token(secret: str, user: str, expires_s: int, device: str | None = None) -> str:
    if not is_valid_id(user):
        raise ValueError(f"invalid user id {user!r}")
    if device is not None and not is_valid_id(device):
        raise ValueError(f"invalid device {device!r}")
    payload = (f"{VERSION}.{user}.{expires_s}" if device is None
               else f"{VERSION_DEVICE}.{user}.{expires_s}.{device}")
    return f"{payload}.{_sign(secret, payload)}"


def token_device(token: str) -> str | None:
    """The device fingerprint of a (verified) v2 token; None for v1."""
    parts = token.split(".")
    return parts[3] if len(parts) == 5 and parts[0] == VERSION_DEVICE else None


def verify_token(secret: str, token: str, now_s: float) -> str | TokenError:
    """The user id the token proves, or why it proves nothing."""
    found = verify_signed({"": secret}, token, now_s)
    return found if isinstance(found, TokenError) else found[0]


def verify_signed(secrets: dict[str, str], token: str, now_s: float) -> tuple[str, str] | TokenError:
    """(the user the token proves, the channel whose secret signed it: '' for the platform's,
    a partner app's channel for its own), or why it proves nothing. The platform's secret is
    tried first, then each partner's (a bounded few: server/partners/rules.py)."""
    parts = token.split(".")
    if not ((len(parts) == 4 and parts[0] == VERSION)
            or (len(parts) == 5 and parts[0] == VERSION_DEVICE and is_valid_id(parts[3]))):
        return TokenError("auth_invalid", "malformed token")
    user, expires, signature = parts[1], parts[2], parts[-1]
    if not signature.isascii():  # compare_digest refuses other str (a TypeError, not a verdict)
        return TokenError("auth_invalid", "malformed token")
    payload = token.rsplit(".", 1)[0]
    channel = next((c for c, secret in secrets.items()
                    if hmac.compare_digest(_sign(secret, payload), signature)), None)
    if channel is None:
        return TokenError("auth_invalid", "bad signature")
    # (the length first: int() of thousands of digits raises)
    if not is_valid_id(user) or not (expires.isascii() and expires.isdigit()) \
            or len(expires) > len(str(EXPIRES_MAX_S)):
        return TokenError("auth_invalid", "malformed token")
    if int(expires) <= now_s:
        return TokenError("auth_expired", "token expired")
    return user, channel
