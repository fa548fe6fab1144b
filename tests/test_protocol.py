"""The strict codec of protocol v1 and its AsyncAPI document (pure, no I/O)."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from protocol import asyncapi
from protocol.errors import CLOSE_CODES, ERRORS, REJECTIONS, should_reconnect
from protocol.messages import CLIENT, SERVER, Decoded, DecodeError, decode_client, decode_server

MAX = 4096
GIFT = {"type": "gift.send", "id": "r1", "gift_id": "g1", "to": "bob", "asset": "note.do", "count": 2}


def dec(obj: object) -> Decoded | DecodeError:
    return decode_client(orjson.dumps(obj), MAX)


def test_valid_gift_decodes() -> None:
    """A well-formed gift.send decodes to its fields."""
    out = dec(GIFT)
    assert isinstance(out, Decoded)
    assert out.type == "gift.send" and out.data["count"] == 2


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (b"not json", "bad_json"),
        (b"[1, 2]", "bad_json"),
        (orjson.dumps({"type": "gift.steal", "id": "r1"}), "unknown_type"),
        (orjson.dumps({"id": "r1"}), "unknown_type"),
        (orjson.dumps({k: v for k, v in GIFT.items() if k != "to"}), "missing_field"),
        (orjson.dumps({**GIFT, "from": "alice"}), "unknown_field"),
        (orjson.dumps({**GIFT, "count": "2"}), "bad_field"),
        (orjson.dumps({**GIFT, "count": 2.0}), "bad_field"),
        (orjson.dumps({**GIFT, "count": True}), "bad_field"),
        (orjson.dumps({**GIFT, "count": 0}), "bad_field"),
        (orjson.dumps({**GIFT, "to": "bo b"}), "bad_field"),
        (orjson.dumps({**GIFT, "gift_id": "x" * 65}), "bad_field"),
        (b"{" + b" " * MAX + b"}", "frame_too_large"),
    ],
)
def test_malformed_frames_get_their_code(frame: bytes, code: str) -> None:
    """Each kind of malformed frame maps to its own stable error code."""
    out = decode_client(frame, MAX)
    assert isinstance(out, DecodeError)
    assert out.code == code
    assert out.code in ERRORS


def test_error_keeps_request_id() -> None:
    """An error for a frame that carried a valid id echoes that id."""
    out = dec({**GIFT, "count": -1})
    assert isinstance(out, DecodeError) and out.request_id == "r1"


def test_server_decoder_refuses_undeclared_fields() -> None:
    """Clients decode server frames strictly too, so drift is caught."""
    ok = decode_server(orjson.dumps({"type": "pong", "id": "r1"}))
    bad = decode_server(orjson.dumps({"type": "pong", "id": "r1", "extra": 1}))
    assert isinstance(ok, Decoded)
    assert isinstance(bad, DecodeError) and bad.code == "unknown_field"


def test_codes_are_unique_and_documented() -> None:
    """Error, rejection and close codes never collide; close codes say whether to reconnect."""
    assert not set(ERRORS) & set(REJECTIONS)
    codes = [c.code for c in CLOSE_CODES.values()]
    assert len(codes) == len(set(codes))
    assert all(1000 <= c < 1016 or 4000 <= c < 5000 for c in codes)  # RFC 6455 or ours
    assert should_reconnect(4000) and not should_reconnect(1007) and not should_reconnect(4999)


def test_protocol_readme_code_tables_are_generated() -> None:
    """protocol/README.md's error, rejection and close code tables are what errors.py says."""
    doc = (Path(asyncapi.__file__).parent / "README.md").read_text()
    assert asyncapi.code_tables() in doc, "run: python -m protocol.asyncapi --tables"


def test_asyncapi_document_matches_types() -> None:
    """The committed protocol/asyncapi.json is what the types generate."""
    committed = Path(asyncapi.__file__).with_name("asyncapi.json").read_bytes()
    assert committed == asyncapi.render(), "run: python -m protocol.asyncapi > protocol/asyncapi.json"
    doc = orjson.loads(committed)
    assert set(doc["components"]["messages"]) == {n.replace(".", "_") for n in {*CLIENT, *SERVER}}


def test_readme_configuration_table_is_current() -> None:
    """The README lists every setting exactly as `python -m server.config` prints it."""
    from server.config import markdown_table

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    assert markdown_table() in readme


def test_protocol_readme_lists_every_type_and_code() -> None:
    """protocol/README.md documents every message type, error, rejection and close code."""
    doc = (Path(asyncapi.__file__).parent / "README.md").read_text()
    names = [*CLIENT, *SERVER, *ERRORS, *REJECTIONS] + [str(c.code) for c in CLOSE_CODES.values()]
    missing = [n for n in names if f"`{n}`" not in doc and f"| {n} |" not in doc]
    assert missing == []
