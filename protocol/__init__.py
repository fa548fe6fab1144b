"""giftwire wire protocol v1: message schema, strict codec, error codes, client."""

PROTOCOL_VERSION = 1
