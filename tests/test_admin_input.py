"""Bad admin input gets a 4xx with a stable code, never a 5xx or a plain-text page (issue 8)."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

import httpx

from tests.support import Admin, Proc, uid

LEDGER_PAGE_MAX = 200  # the default GIFTWIRE_LEDGER_PAGE_MAX the shared server runs with


def code(r: httpx.Response) -> tuple[int, str]:
    assert r.headers["content-type"] == "application/json", (r.status_code, r.text)
    return r.status_code, r.json()["error"]["code"]


async def test_cursor_out_of_stream_id_range_is_bad_cursor(admin: Admin) -> None:
    """A cursor part past 2^64 (or not ASCII digits) is a 400 bad_cursor, not a 503 "retry later"."""
    u = uid()
    await admin.user(u)
    for cursor in ("18446744073709551616-0", "0-18446744073709551616", "99999999999999999999-0",
                   "5-2%0A", "%D9%A1-0", "5", "5-2-1", "-5-2", "+5-2", "5-", ""):
        r = await admin.call("GET", f"/users/{u}/ledger?cursor={cursor}", ok=False)
        assert code(r) == (400, "bad_cursor"), (cursor, r.text)
    top = await admin.call("GET", f"/users/{u}/ledger?cursor=18446744073709551615-18446744073709551615")
    assert top == {"entries": [], "next_cursor": None}


async def test_ledger_limit_out_of_range_is_bad_field(admin: Admin) -> None:
    """A limit outside [1, 200] is a 400 bad_field naming the range, not a silently clamped page."""
    u = uid()
    await admin.user(u)
    for limit in ("0", "-1", str(10**30), "x", "", "%205", "1.5", "1_0", "%D9%A5",
                  str(LEDGER_PAGE_MAX + 1)):
        r = await admin.call("GET", f"/users/{u}/ledger?limit={limit}", ok=False)
        assert code(r) == (400, "bad_field"), (limit, r.text)
        assert f"[1, {LEDGER_PAGE_MAX}]" in r.json()["error"]["message"]
    for ok in (1, LEDGER_PAGE_MAX):
        assert await admin.call("GET", f"/users/{u}/ledger?limit={ok}") == {
            "entries": [], "next_cursor": None}


async def test_ledger_pages_chain_to_an_empty_end(admin: Admin) -> None:
    """Valid-limit pages chain through every entry once; cursor 0-0 is an empty page, not a 503."""
    u = uid()
    await admin.user(u)
    for amount in range(1, 6):
        await admin.grant(u, amount)
    seen: list[int] = []
    sizes: list[int] = []
    cursor = ""
    while True:
        page = await admin.call("GET", f"/users/{u}/ledger?limit=2{cursor}")
        seen += [e["delta"] for e in page["entries"]]
        sizes.append(len(page["entries"]))
        if page["next_cursor"] is None:
            break
        cursor = f"&cursor={page['next_cursor']}"
    assert (seen, sizes) == ([5, 4, 3, 2, 1], [2, 2, 1])
    whole = await admin.call("GET", f"/users/{u}/ledger")
    assert [e["delta"] for e in whole["entries"]] == seen and whole["next_cursor"] is None
    oldest = whole["entries"][-1]["cursor"]
    assert await admin.call("GET", f"/users/{u}/ledger?cursor={oldest}") == {
        "entries": [], "next_cursor": None}
    assert await admin.call("GET", f"/users/{u}/ledger?cursor=0-0") == {
        "entries": [], "next_cursor": None}


async def test_unmatched_paths_are_json_404(server: Proc, admin: Admin) -> None:
    """A path no route matches (encoded slash in an id, a typo) is a JSON 404 not_found, not text."""
    for method, path in (("PUT", "/users/a%2Fb"), ("GET", "/nope"), ("GET", "/users/a/b/c"),
                         ("POST", "/users")):
        r = await admin.call(method, path, {}, ok=False)
        assert code(r) == (404, "not_found"), (method, path, r.text)
    async with httpx.AsyncClient(base_url=server.http) as c:
        assert code(await c.get("/admin/nope")) == (404, "not_found")
        assert code(await c.get("/")) == (404, "not_found")


async def test_bad_user_path_params_are_bad_field(admin: Admin) -> None:
    """A path id failing the id pattern (trailing newline, encoded slash) is a 400 bad_field."""
    u = uid()
    for method, path, body in (("PUT", f"/users/{u}%0A", {}), ("GET", f"/users/{u}%0A", None),
                               ("GET", f"/users/{u}%0A/balances", None),
                               ("GET", f"/users/{u}%0A/ledger", None),
                               ("PUT", f"/users/{u}%0A/mentor", {"mentor": u}),
                               ("PUT", f"/users/{u}%2Fmentor", {"mentor": u})):
        r = await admin.call(method, path, body, ok=False)
        assert code(r) == (400, "bad_field"), (method, path, r.text)
    assert code(await admin.call("GET", f"/users/{u}", ok=False)) == (404, "user_unknown")


async def test_wrong_method_is_json_405(server: Proc, admin: Admin) -> None:
    """A wrong method is a JSON 405 method_not_allowed; Allow lists every method the path takes."""
    cases = (("DELETE", "/users/x", {"GET", "HEAD", "PUT"}), ("POST", "/follows", {"PUT", "DELETE"}),
             ("GET", "/grants", {"POST"}), ("DELETE", "/festivals", {"GET", "HEAD", "PUT"}))
    for method, path, allow in cases:
        r = await admin.call(method, path, ok=False)
        assert code(r) == (405, "method_not_allowed"), (method, path, r.text)
        assert set(r.headers["allow"].split(", ")) == allow
    async with httpx.AsyncClient(base_url=server.http) as c:
        assert code(await c.post("/health")) == (405, "method_not_allowed")


async def test_self_follow_and_block_are_refused(admin: Admin) -> None:
    """Following or blocking oneself is a 400 self_relation; deleting such an edge still answers 200."""
    u = uid()
    await admin.user(u)
    for path, body in (("/follows", {"follower": u, "followee": u}),
                       ("/blocks", {"blocker": u, "blocked": u})):
        r = await admin.call("PUT", path, body, ok=False)
        assert code(r) == (400, "self_relation"), (path, r.text)
        await admin.call("DELETE", path, body)


async def test_edges_to_unknown_users_are_refused(admin: Admin) -> None:
    """A follow or block naming a user giftwire lacks is a 404 user_unknown; DELETE stays idempotent."""
    known, ghost = uid("k"), uid("ghost")
    await admin.user(known)
    for path, a, b in (("/follows", "follower", "followee"), ("/blocks", "blocker", "blocked")):
        for body, who in (({a: known, b: ghost}, f"{b} {ghost}"), ({a: ghost, b: known}, f"{a} {ghost}")):
            r = await admin.call("PUT", path, body, ok=False)
            assert code(r) == (404, "user_unknown"), (path, body, r.text)
            assert who in r.json()["error"]["message"]
            for _ in range(2):
                await admin.call("DELETE", path, body)
    other = uid("o")
    await admin.user(other)
    assert (await admin.call("PUT", "/follows", {"follower": known, "followee": other}))["followee"] == other
    for _ in range(2):
        assert (await admin.call("DELETE", "/follows", {"follower": known, "followee": other}))[
            "following"] is False


async def test_head_on_a_get_route_answers_as_get_without_a_body(server: Proc, admin: Admin
                                                                  ) -> None:
    """HEAD on a GET route answers with the GET's status and headers and no body, a 404 included."""
    # Every GET route lists HEAD in `Allow`; it was a 500.
    u = uid("h")
    await admin.user(u)
    async with httpx.AsyncClient(base_url=server.http + "/admin/v1",
                                 headers={"Authorization": f"Bearer {server.secrets['admin_key']}"}) as c:
        for path, status in ((f"/users/{u}", 200), (f"/users/{u}/ledger", 200), ("/festivals", 200),
                             ("/dead-letters", 200), (f"/users/{uid('ghost')}", 404)):
            r = await c.head(path)
            assert (r.status_code, r.content) == (status, b""), path
            assert r.headers["content-type"] == "application/json", path
        # no stray body bytes were left on the kept-alive connection
        assert (await c.get(f"/users/{u}")).json()["id"] == u


async def test_bulk_users_without_an_id_are_missing_field(admin: Admin) -> None:
    """A bulk user with no `id` is `missing_field`, a non-object one `bad_body`, as a PUT body is."""
    # These are the codes a PUT body gets, not `bad_field`.
    out = await admin.call("POST", "/bulk", {"users": [{"vip": True}, "carol", {"id": uid("b")}]})
    assert out["users"] == 1, out
    assert sorted((e["index"], e["code"]) for e in out["errors"]) == [(0, "missing_field"),
                                                                      (1, "bad_body")]


async def test_bulk_edges_need_users_created_first(admin: Admin) -> None:
    """Bulk edges to users made in the same call land; to unknown users or oneself are errors, in order."""
    a, b, ghost = uid("a"), uid("b"), uid("ghost")
    out = await admin.call("POST", "/bulk", {
        "users": [{"id": a}, {"id": b}],
        "follows": [{"follower": a, "followee": b, "since_ms": 0},
                    {"follower": a, "followee": ghost}, {"follower": b, "followee": b}],
        "blocks": [{"blocker": b, "blocked": a}, {"blocker": ghost, "blocked": a}],
    })
    assert (out["users"], out["follows"], out["blocks"]) == (2, 1, 1), out
    assert [(e["kind"], e["index"], e["code"]) for e in out["errors"]] == [  # in order
        ("follows", 1, "user_unknown"), ("follows", 2, "self_relation"), ("blocks", 1, "user_unknown")]


async def test_bulk_lists_the_first_errors_in_the_order_of_the_items(admin: Admin) -> None:
    """Bulk `errors` lists the first 100 by kind and index, whatever order the items failed in."""
    # Items run at once and end in any order (a follow of oneself is refused at once, one of an unknown user
    # after a read).
    good = uid("u")
    follows = [{"follower": good, "followee": good if i % 2 else f"{uid('ghost')}"}
               for i in range(150)]
    out = await admin.call("POST", "/bulk", {"users": [{"id": good}], "follows": follows})
    assert (out["users"], out["follows"]) == (1, 0)
    assert [(e["kind"], e["index"], e["code"]) for e in out["errors"]] == [
        ("follows", i, "self_relation" if i % 2 else "user_unknown") for i in range(100)]


async def test_a_users_pages_are_404_for_an_unknown_user(admin: Admin) -> None:
    """Balances, ledger, likes and popularity of a user with no profile are 404 `user_unknown`."""
    # Not an empty page that reads like a user with nothing.
    ghost = uid("ghost")
    for path in (f"/users/{ghost}/balances", f"/users/{ghost}/ledger", f"/users/{ghost}/likes",
                 f"/popularity/accounts/{ghost}"):
        r = await admin.call("GET", path, ok=False)
        assert (r.status_code, r.json()["error"]["code"]) == (404, "user_unknown"), path


async def test_dead_letter_partition_and_appeal_evidence_are_checked(admin: Admin) -> None:
    """An unknown dead-letter partition or id is 404 `not_found`; evidence of no kind is 400 `bad_field`."""
    # Not `wrong_evidence`, which is for a real kind that does not fit the case.
    r = await admin.call("POST", "/dead-letters/7/1-1/retry", ok=False)
    assert (r.status_code, r.json()["error"]["code"]) == (404, "not_found")
    for bad_id in ("garbage", "1-2-3", "99999999999999999999-0"):  # no dead letter has it
        r = await admin.call("POST", f"/dead-letters/0/{bad_id}/void", ok=False)
        assert (r.status_code, r.json()["error"]["code"]) == (404, "not_found"), bad_id
    r = await admin.call("POST", "/risk/cases/any-case/resolve", {"evidence": "selfie"}, ok=False)
    assert (r.status_code, r.json()["error"]["code"]) == (400, "bad_field")


async def test_a_body_too_large_or_unauthorized_is_refused_before_it_is_read(server: Proc) -> None:
    """A body declared over 8 MiB is 413 before a byte is sent, an unauthorized one 401; both close."""
    # Both close the connection, so a body that never ends holds nothing open. The server used to read the
    # whole body first.
    url = urlsplit(server.http)
    for auth in (f"Bearer {server.secrets['admin_key']}", "Bearer wrong"):
        reader, writer = await asyncio.open_connection(url.hostname, url.port)
        writer.write(f"POST /admin/v1/bulk HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\n"
                     "Content-Type: application/json\r\nContent-Length: 1000000000\r\n\r\n"
                     "{".encode())
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 10)  # to EOF: the server closed it
        writer.close()
        status = answer.split(b" ", 2)[1]
        assert status == (b"413" if "wrong" not in auth else b"401"), answer[:200]
        assert b"connection: close" in answer.lower(), answer[:300]


async def test_a_date_is_exactly_yyyy_mm_dd(admin: Admin) -> None:
    """ISO dates other than YYYY-MM-DD (a week date, no dashes) are 400 bad_field, not read as another day."""
    # A festival day sets gift prices.
    for day in ("2027-W06-6", "2027W066", "20270206", "2027-02-06T00:00", "２０２７-02-06"):
        r = await admin.call("PUT", "/festivals", {"days": [day]}, ok=False)
        assert code(r) == (400, "bad_field"), (day, r.text)
    assert (await admin.call("PUT", "/festivals", {"days": ["2027-02-06"]}))["days"] == ["2027-02-06"]
    # a year before 1000 keeps its four digits (strftime's %Y dropped the leading zero)
    early = ["0001-02-03", "0999-01-01"]
    assert (await admin.call("PUT", "/festivals", {"days": early}))["days"] == early
    assert (await admin.call("GET", "/festivals"))["days"] == early
    await admin.call("PUT", "/festivals", {"days": []})


async def test_bodies_are_strict_on_every_route_that_takes_one_or_none(admin: Admin) -> None:
    """`PUT /users/{id}` refuses an `id` in its body; a POST taking no body refuses all but none or `{}`."""
    # The path names the user (/bulk's items carry theirs). A POST that takes no body (erasure, board rebuild,
    # dead-letter actions) refuses one that is not JSON, not an object or has a field, and acts on none or
    # `{}`.
    u = uid()
    r = await admin.call("PUT", f"/users/{u}", {"id": "other"}, ok=False)
    assert code(r) == (400, "unknown_field"), r.text
    assert code(await admin.call("GET", "/users/other", ok=False)) == (404, "user_unknown")
    out = await admin.call("POST", "/bulk", {"users": [{"id": u, "vip": True}]})
    assert (out["users"], out["errors"]) == (1, [])
    for body, expected in ((b"{not json", "bad_json"), (b"[]", "bad_body"),
                           (b'{"board": []}', "unknown_field")):
        for path in (f"/users/{u}/erasure", "/rooms/nowhere/board/rebuild",
                     "/dead-letters/0/1-1/retry"):
            r = await admin.client.request("POST", path, content=body)
            assert code(r) == (400, expected), (path, body, r.text)
    assert (await admin.call("GET", f"/users/{u}"))["vip"] is True  # not erased
    assert code(await admin.call("POST", "/rooms/nowhere/board/rebuild", {}, ok=False)) == \
        (404, "room_unknown")
    r = await admin.client.request("POST", f"/users/{u}/erasure")  # no body at all
    assert r.status_code == 200 and r.json()["user"] == u, r.text


async def test_the_auth_scheme_is_case_insensitive_and_the_key_is_not(admin: Admin) -> None:
    """The `Bearer` scheme is case-insensitive (RFC 9110); the key itself must match exactly."""
    key = admin.client.headers["authorization"].split(" ", 1)[1]
    for header, status in ((f"bearer {key}", 200), (f"BEARER {key}", 200),
                           (f"Bearer {key.upper()}" if key != key.upper() else "Bearer x", 401),
                           (f"Basic {key}", 401), (key, 401), (f"Bearer  {key}", 401)):
        r = await admin.client.get("/festivals", headers={"authorization": header})
        assert r.status_code == status, (header, r.text)


async def test_a_creator_is_not_their_own_iron_fan(admin: Admin) -> None:
    """`PUT /iron-fans` naming one user as both fan and creator is 400 self_relation."""
    u = uid()
    await admin.user(u)
    r = await admin.call("PUT", "/iron-fans", {"fan": u, "creator": u, "iron": True}, ok=False)
    assert code(r) == (400, "self_relation")


async def test_a_region_or_gender_is_removed_with_null(admin: Admin) -> None:
    """`PUT /users/{id}` with `region` or `gender` null removes it, shown as null; the other fields stay."""
    u = uid()
    await admin.user(u, region="eu", gender="female", vip=True)
    got = await admin.call("GET", f"/users/{u}")
    assert (got["region"], got["gender"]) == ("eu", "female")
    await admin.call("PUT", f"/users/{u}", {"region": None})
    got = await admin.call("GET", f"/users/{u}")
    assert (got["region"], got["gender"], got["vip"]) == (None, "female", True)
    await admin.call("PUT", f"/users/{u}", {"gender": None})
    assert (await admin.call("GET", f"/users/{u}"))["gender"] is None
