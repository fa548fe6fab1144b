"""The platform backend's admin API: auth, validation, idempotent grants, bulk, ledger pages."""

from __future__ import annotations

import httpx

from tests.support import Admin, Proc, uid


async def test_admin_key_required(server: Proc) -> None:
    """Without the admin key every admin call is 401 with a code."""
    async with httpx.AsyncClient(base_url=server.http) as c:
        r = await c.get("/admin/v1/users/x", headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"


async def test_bad_bodies_get_codes(admin: Admin) -> None:
    """Malformed bodies are refused with stable codes, never a 500."""
    cases = [
        ("PUT", "/users/bad id", {}, 400, "bad_field"),
        ("PUT", f"/users/{uid()}", {"vip": "yes"}, 400, "bad_field"),
        ("PUT", f"/users/{uid()}", {"nickname": "x"}, 400, "unknown_field"),
        ("POST", "/grants", {"id": "g", "user": "u", "asset": "gold", "amount": 1}, 400, "unknown_asset"),
        ("POST", "/grants", {"id": "g", "user": "u", "asset": "note.do", "amount": 0}, 400, "bad_field"),
        ("POST", "/grants", {"id": "g", "user": "u", "asset": "note.do", "amount": 10**15}, 400,
         "amount_too_large"),
        ("POST", "/grants", {"id": "g", "user": "u", "asset": "note.do", "amount": 10**30}, 400,
         "amount_too_large"),
        ("POST", "/grants", {"id": "g", "user": "u", "asset": "popularity", "amount": 9}, 400,
         "asset_not_grantable"),
        ("POST", "/revocations", {"id": "g", "user": "u", "asset": "popularity", "amount": 9}, 400,
         "asset_not_grantable"),
        ("POST", "/grants", {"user": "u"}, 400, "missing_field"),
        ("PUT", "/festivals", {"days": ["2026-13-01"]}, 400, "bad_field"),
        ("GET", f"/users/{uid()}", None, 404, "user_unknown"),
        ("GET", "/users/x/ledger?cursor=zzz", None, 400, "bad_cursor"),
        ("POST", "/bulk", {"users": "x"}, 400, "bad_field"),
        ("POST", "/bulk", {"widgets": []}, 400, "unknown_field"),
        ("POST", "/bulk", [], 400, "bad_body"),
    ]
    for method, path, body, status, code in cases:
        r = await admin.call(method, path, body, ok=False)
        assert (r.status_code, r.json()["error"]["code"]) == (status, code), (path, r.text)
    r = await admin.client.post("/grants", content=b"{oops")
    assert (r.status_code, r.json()["error"]["code"]) == (400, "bad_json")


async def test_grants_and_revocations_are_idempotent(admin: Admin) -> None:
    """The same grant id applies once; a different amount under it conflicts; revocations can't overdraw."""
    u = uid()
    await admin.user(u)
    body = {"id": "grant-1", "user": u, "asset": "note.mi", "amount": 7}
    first = await admin.call("POST", "/grants", body)
    again = await admin.call("POST", "/grants", body)
    assert (first["balance"], first["replayed"], again["balance"], again["replayed"]) == (7, False, 7, True)
    clash = await admin.call("POST", "/grants", {**body, "amount": 8}, ok=False)
    assert (clash.status_code, clash.json()["error"]["code"]) == (409, "grant_id_conflict")
    over = await admin.call("POST", "/revocations", {**body, "id": "rev-1", "amount": 8}, ok=False)
    assert (over.status_code, over.json()["error"]["code"]) == (409, "insufficient_balance")
    await admin.call("POST", "/revocations", {**body, "id": "rev-2", "amount": 3})
    assert await admin.balances(u) == {"note.mi": 4}
    ghost = await admin.call("POST", "/grants", {**body, "id": "g2", "user": uid()}, ok=False)
    assert ghost.status_code == 404


async def test_bulk_seeding_and_ledger_pages(admin: Admin) -> None:
    """Bulk creates users, edges and grants in one call; the ledger pages newest first."""
    a, b = uid("a"), uid("b")
    grants = [{"id": f"bulk-{a}-{i}", "user": a, "asset": "note.do", "amount": i + 1} for i in range(5)]
    out = await admin.call("POST", "/bulk", {
        "users": [{"id": a, "real_name_verified": True}, {"id": b}, {"id": "bad id"}],
        "follows": [{"follower": a, "followee": b, "since_ms": 0}],
        "blocks": [],
        "grants": grants,
    })
    assert (out["users"], out["follows"], out["grants"]) == (2, 1, 5)
    assert out["errors"] == [{"kind": "users", "index": 2, "code": "bad_field",
                              "message": "user must match [A-Za-z0-9_-]{1,64}"}]
    assert await admin.balances(a) == {"note.do": 15}
    profile = await admin.call("GET", f"/users/{a}")
    assert profile["real_name_verified"] is True and profile["balances"] == {"note.do": 15}
    page1 = await admin.call("GET", f"/users/{a}/ledger?limit=3")
    page2 = await admin.call("GET", f"/users/{a}/ledger?limit=3&cursor={page1['next_cursor']}")
    deltas = [e["delta"] for e in page1["entries"] + page2["entries"]]
    assert sorted(deltas) == [1, 2, 3, 4, 5] and len(page1["entries"]) == 3
    cursors = [tuple(map(int, e["cursor"].split("-"))) for e in page1["entries"] + page2["entries"]]
    assert cursors == sorted(cursors, reverse=True) and len(set(cursors)) == 5  # newest first
    assert page2["next_cursor"] is None
    assert all(e["account"] == "mint" and e["kind"] == "grant" for e in page1["entries"])
    whole = await admin.call("GET", f"/users/{a}/ledger?limit=5")  # exactly the five lines
    assert len(whole["entries"]) == 5 and whole["next_cursor"] is None  # no empty page after
