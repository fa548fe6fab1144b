"""The strict codec of protocol v1 and its AsyncAPI document (pure, no I/O)."""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path

import orjson
import pytest

from protocol import asyncapi
from protocol.errors import CLOSE_CODES, ERRORS, REJECTIONS, should_reconnect
from protocol.messages import CLIENT, SERVER, Decoded, DecodeError, decode_client, decode_server
from server.store.embedded import EmbeddedValkey

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


@pytest.mark.parametrize("count", [b"9007199254740992", b"18446744073709551615",
                                   b"18446744073709551616", b"1" + b"0" * 30])
def test_a_count_past_every_bound_says_so_however_long_it_is(count: bytes) -> None:
    """A whole count past 10^12 is `bad_field` "count must be <= ...", past 64 bits too."""
    # The JSON parser hands a count past 64 bits over as a float: it said "must be an integer".
    frame = orjson.dumps({**GIFT, "count": 7}).replace(b":7", b":" + count)
    out = decode_client(frame, MAX)
    assert isinstance(out, DecodeError) and out.code == "bad_field"
    assert out.detail == "count must be <= 1000000000000", out.detail


def test_a_frame_too_large_or_with_half_a_surrogate_pair_still_answers_its_id() -> None:
    """A frame too large, or escaping half a surrogate pair, is still answered under its `id`."""
    # A client waiting on its `id` hears why: `frame_too_large`, or `bad_json` saying so; a frame no parser
    # reads has none.
    big = decode_client(orjson.dumps({**GIFT, "gift_id": "g" * 64, "pad": "x" * MAX}), MAX)
    assert isinstance(big, DecodeError) and (big.code, big.request_id) == ("frame_too_large", "r1")
    half = decode_client(b'{"type":"ping","id":"y4","x":"\\ud800"}', MAX)
    assert isinstance(half, DecodeError) and (half.code, half.request_id) == ("bad_json", "y4")
    assert "surrogate" in half.detail
    broken = decode_client(b'{"type":"ping","id":"y4"', MAX)
    assert isinstance(broken, DecodeError) and (broken.code, broken.request_id) == ("bad_json", None)
    for other in (b'{"type":"ping","id":"y4","x":NaN}', b'{"type":"ping","id":"y4","x":1e400}'):
        out = decode_client(other, MAX)  # not JSON either way: not said to be a surrogate
        assert isinstance(out, DecodeError) and out.detail == "frame is not valid JSON", other


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


def _admin_error_calls() -> tuple[set[str], set[str]]:
    """The codes passed as string literals to `AdminError`, `error_response`, `DeadLetterError`
    (whose code the dead-letter routes pass on) and `http_refusal` (the HTTP layer's) anywhere
    in server/, and the other first arguments."""
    import ast

    literals: set[str] = set()
    others: set[str] = set()
    for path in sorted((Path(__file__).parent.parent / "server").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            func = node.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
            if name not in ("AdminError", "error_response", "DeadLetterError", "http_refusal"):
                continue
            first = node.args[0]
            # a literal, or a choice between literals (`"a" if x else "b"`)
            choices = [first.body, first.orelse] if isinstance(first, ast.IfExp) else [first]
            if all(isinstance(c, ast.Constant) and isinstance(c.value, str) for c in choices):
                literals.update(c.value for c in choices if isinstance(c, ast.Constant))
            else:
                others.add(ast.unparse(first))
    return literals, others


def test_admin_error_codes_are_declared() -> None:
    """Every admin error code the server can answer with is in ADMIN_ERRORS, and none is unused."""
    from protocol.errors import ADMIN_ERRORS
    from server.ledger.admin import GRANT_REJECTIONS

    literals, others = _admin_error_calls()
    # the only codes not written as literals: pass-throughs (`error_response`'s `code`, an
    # AdminError's or DeadLetterError's `exc.code`: their literals are scanned) and the grant
    # script's codes (mapped explicitly); an f-string or any other expression fails here
    assert others <= {"code", "exc.code", "GRANT_REJECTIONS[detail]"}, others
    used = literals | set(GRANT_REJECTIONS.values())
    assert used - set(ADMIN_ERRORS) == set(), "add them to protocol.errors.ADMIN_ERRORS"
    assert set(ADMIN_ERRORS) - used == set(), "unused admin error codes"
    assert all(400 <= c.status < 600 and c.message for c in ADMIN_ERRORS.values())


def test_readme_admin_error_table_is_current() -> None:
    """README.md's admin error table lists every code of ADMIN_ERRORS with its HTTP status."""
    import re

    from protocol.errors import ADMIN_ERRORS

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    section = readme.split("\n## Admin API\n", 1)[1].split("\n## ", 1)[0]
    table = section.split("| status | code | when |\n| --- | --- | --- |\n", 1)[1].split("\n\n", 1)[0]
    listed: dict[str, int] = {}
    for row in table.splitlines():
        status, codes, _when = (cell.strip() for cell in row.strip("|").split("|", 2))
        for code in re.findall(r"`([a-z_]+)`", codes):
            assert code not in listed, f"{code} is listed twice"
            listed[code] = int(status)
    assert listed == {c.code: c.status for c in ADMIN_ERRORS.values()}


def test_protocol_readme_type_tables_are_generated() -> None:
    """protocol/README.md's message tables are what the catalogue declares."""
    doc = (Path(asyncapi.__file__).parent / "README.md").read_text()
    assert asyncapi.type_tables() in doc, "run: python -m protocol.asyncapi --tables"


async def test_every_client_message_has_one_handler_and_declared_replies(valkey: EmbeddedValkey) -> None:
    """The modules handle exactly the declared client messages, each with declared reply types."""
    # An unhandled type would stop the server at start-up.
    import redis.asyncio as aredis

    from server.config import Settings
    from server.parts import build

    client = aredis.Redis.from_url(valkey.url, decode_responses=True)
    p = build(Settings(), client)
    await client.aclose()
    kinds = {k.type: k.replies for k in p.requests.kinds()}
    assert set(kinds) == set(CLIENT)
    assert all(kinds[t] and set(kinds[t]) <= set(SERVER) for t in kinds)
    # (a subset: a new subsystem adds its flows without touching this test)
    assert {"send", "accept", "decline", "envelope.send", "envelope.grab", "popularity.use",
            "popularity.cancel"} <= set(p.flows.kinds())


def layout_block() -> str:
    """The README's Layout tree (the code block under `## Layout`)."""
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    section = readme.split("\n## Layout\n", 1)[1]
    return section.split("```\n", 2)[1]


def layout_names() -> dict[tuple[str, str | None], set[str]]:
    """The file names (or globs) the Layout tree lists under each folder: (top, subfolder)."""
    names: dict[tuple[str, str | None], set[str]] = {}
    top, sub = "", None
    for line in layout_block().splitlines():
        if m := re.match(r"^(\w+)/\s", line):
            top, sub = m.group(1), None
        elif m := re.match(r"^  (\w+)/\s", line):
            sub = m.group(1)
        names.setdefault((top, sub), set()).update(re.findall(r"[\w*]+\.(?:py|lua)", line))
    return names


def test_readme_layout_names_every_source_file() -> None:
    """The README's Layout names each Python and Lua file of protocol/, server/, loadtest/ in its folder."""
    # A glob such as `pop_*.lua` covers its files; a folder's lua/ is listed with it. So the tree answers
    # "where is X" for every file a reader can open.
    names = layout_names()
    root = Path(__file__).parent.parent
    missing = []
    for folder in ("protocol", "server", "loadtest"):
        for path in sorted((root / folder).rglob("*")):
            if path.suffix not in (".py", ".lua") or path.name == "__init__.py":
                continue
            parts = path.relative_to(root).parts[:-1]
            if parts[-1] == "lua":
                parts = parts[:-1]
            here = names.get((parts[0], parts[1] if len(parts) > 1 else None), set())
            if len(parts) > 2 or not any(fnmatch.fnmatch(path.name, n) for n in here):
                missing.append(str(path.relative_to(root)))
    assert missing == [], f"add to the README's Layout, under its folder: {missing}"


def test_readme_adding_a_subsystem_example_is_the_real_module() -> None:
    """Each line of the README's "Adding a subsystem" example is a line of server/rooms/module.py."""
    # Comments aside; so the example calls the registries as they really are.
    root = Path(__file__).parent.parent
    readme = (root / "README.md").read_text()
    example = readme.split("### Adding a subsystem\n", 1)[1].split("```python\n", 1)[1]
    example = example.split("```", 1)[0]
    module = {line.strip() for line in (root / "server/rooms/module.py").read_text().splitlines()}
    code = [line.split("  #", 1)[0].strip() for line in example.splitlines()
            if not line.lstrip().startswith("#")]
    assert [c for c in code if c and c not in module] == []


def test_a_risk_notice_for_the_longest_case_id_fits_its_schema() -> None:
    """A risk notice naming the longest case id (97 characters) still decodes against its schema."""
    # A case id is `<reason>-<user>-<ms>`: the longest reason with a 64-character user id. A client checking
    # frames against the schema would have refused it at 64.
    case = f"automation_regular-{'u' * 64}-{10**12 * 9}"
    notice = {"type": "risk.notice", "action": "banned", "level": "high",
              "reason": "automation_regular", "case": case, "appeal": "notarization", "seq": 1}
    assert len(case) == 97
    assert isinstance(decode_server(orjson.dumps(notice)), Decoded)


def test_the_readmes_one_line_token_signer_signs_as_the_server_does() -> None:
    """The Python signer the README's "Tokens" gives makes the very signature the server checks."""
    import base64
    import hmac

    from server.gateway.auth import make_token

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    (snippet,) = re.findall(r"`(base64\.urlsafe_b64encode\(hmac\.new\([^`]*)`", readme)
    secret, payload = "a-shared-secret-of-some-length", "v1.bob.2000000000"
    signed = eval(snippet, {"base64": base64, "hmac": hmac, "secret": secret, "payload": payload})
    assert isinstance(signed, str)  # ready for the f-string the README shows
    assert f"{payload}.{signed}" == make_token(secret, "bob", 2_000_000_000)


def test_published_patterns_read_white_space_alike_in_python_and_ecmascript() -> None:
    """A published pattern's `\\s` in a class spells out what ECMAScript's `\\s` lacks (\\x1c-\\x1f, NEL)."""
    # The server validates with Python's `re`; a client validating with asyncapi.json in JavaScript
    # would otherwise accept text the server refuses.
    from protocol.asyncapi import generate

    patterns: set[str] = set()

    def walk(node: object) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                if k == "pattern":
                    patterns.add(v)
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(generate())
    assert patterns
    for p in patterns:
        for m in re.finditer(r"\[\^?\\s(?!\\S)", p):
            assert p[m.end():].startswith(r"\x1c-\x1f\x85"), p
