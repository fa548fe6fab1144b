"""The commands as an operator runs them: serve on the embedded Valkey, stop, restart, token, health."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import redis
import websockets

from protocol.client import Client
from server.gateway.auth import verify_token
from server.store import keys
from server.store.embedded import EmbeddedValkey
from tests.support import Admin, Proc, metric, run_audit, short_tmpdir, uid

OwnServer = Callable[..., tuple[Proc, EmbeddedValkey]]


async def test_serve_embedded_survives_restart() -> None:
    """`giftwire serve` with no REDIS_URL keeps every balance across SIGTERM and restart."""
    data = short_tmpdir()
    first = Proc("serve", data, {"REDIS_URL": ""}).start()
    try:
        admin = Admin(first)
        s, r = await admin.pair(10)
        async with await Client.connect(first.ws, first.token(s)) as a:
            assert (await a.send_gift(r, "note.do", 3))["type"] == "gift.confirmed"
        await admin.close()
    finally:
        assert first.stop() == 0
    assert (data / "secrets.json").stat().st_mode & 0o077 == 0  # generated, private
    second = Proc("serve", data, {"REDIS_URL": ""}).start()
    try:
        admin = Admin(second)
        assert await admin.balances(s) == {"note.do": 7}
        assert await admin.balances(r) == {"note.do": 3}
        await admin.close()
    finally:
        assert second.stop() == 0


def test_token_command_prints_a_valid_token() -> None:
    """`giftwire token USER` prints on stdout only a token the server accepts for USER."""
    # On a fresh data dir it says on stderr, once, that it generated the secrets, with the admin key, as serve
    # would.
    data = short_tmpdir()
    out = subprocess.run([sys.executable, "-m", "server.cli", "token", "alice", "--ttl", "60",
                          "--data-dir", str(data)], capture_output=True, text=True, check=True)
    sec = Proc("token", data, {}).secrets
    assert verify_token(sec["token_secret"], out.stdout.strip(), time.time()) == "alice"
    assert "generated development secrets" in out.stderr and sec["admin_key"] in out.stderr
    again = subprocess.run([sys.executable, "-m", "server.cli", "token", "bob",
                            "--data-dir", str(data)], capture_output=True, text=True, check=True)
    assert again.stderr == ""  # generated once


def giftwire(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "server.cli", *args],
                          env={**os.environ, "REDIS_URL": "", **env}, capture_output=True,
                          text=True, timeout=60, check=False)


def test_a_partner_secret_equal_to_the_data_dirs_token_secret_is_refused_in_one_line() -> None:
    """A partner secret equal to the data dir's token secret stops serve, token and partner-secret."""
    # With one line naming the variable and exit 1, never a traceback, and before Valkey starts. The
    # environment check cannot see a secret generated into the data dir.
    data = short_tmpdir()
    giftwire("token", "alice", "--data-dir", str(data))
    mine = json.loads((data / "secrets.json").read_text())["token_secret"]
    env = {"GIFTWIRE_PARTNERS": "a", "GIFTWIRE_PARTNER_SECRETS": f"a={mine}"}
    for args in (("serve", "--port", "0"), ("token", "xx"), ("token", "xx", "--partner", "a"),
                 ("partner-secret", "a")):
        out = giftwire(*args, "--data-dir", str(data), **env)
        assert out.returncode == 1, (args, out)
        assert out.stderr.strip().splitlines() == [
            "giftwire: GIFTWIRE_PARTNER_SECRETS: item 1: the secret of a is another partner's or "
            "the platform's token secret"], (args, out.stderr)
        assert out.stdout == "" and mine not in out.stderr


def test_token_lifetime_comes_from_the_setting_and_bad_input_is_refused() -> None:
    """GIFTWIRE_TOKEN_TTL_S sets `giftwire token`'s default lifetime; a bad user id or `--ttl` is refused."""
    # A bad user id or a lifetime below 1 s is refused with a message, no traceback.
    data = str(short_tmpdir())
    token = giftwire("token", "alice", "--data-dir", data, GIFTWIRE_TOKEN_TTL_S="120").stdout
    assert 100 <= int(token.split(".")[2]) - time.time() <= 121
    for args in (("bad.user",), ("alice", "--ttl", "-5")):
        out = giftwire("token", *args, "--data-dir", data)
        assert out.returncode == 1 and "giftwire:" in out.stderr and "Traceback" not in out.stderr
    for ttl in ("５", "1_0", " 7", "1.5"):  # whole seconds in ASCII digits, else a usage error
        out = giftwire("token", "alice", "--ttl", ttl, "--data-dir", data)
        assert out.returncode == 2 and "--ttl" in out.stderr and out.stdout == "", (ttl, out)


def test_a_port_out_of_range_on_the_command_line_is_named_as_port() -> None:
    """`--port 70000` (or -1, or not a number) is a usage error naming `--port`, exit 2, before any start."""
    # The flag was given, not GIFTWIRE_PORT.
    data = str(short_tmpdir())
    for port in ("70000", "-1", "x", "８０"):
        out = giftwire("serve", f"--port={port}", "--data-dir", data)
        assert out.returncode == 2 and "argument --port" in out.stderr, (port, out)
        assert "GIFTWIRE_PORT" not in out.stderr and out.stdout == ""


def test_a_bad_setting_is_refused_naming_its_variable() -> None:
    """A mistyped, negative, unknown-zone or out-of-order setting stops any command, naming the variable."""
    # It stops at once, with one line and no traceback.
    data = str(short_tmpdir())
    for env, named in (({"GIFTWIRE_GIFTS_PER_DAY": "abc"}, "GIFTWIRE_GIFTS_PER_DAY"),
                       ({"GIFTWIRE_GIFTS_PER_DAY": "-1"}, "GIFTWIRE_GIFTS_PER_DAY"),
                       ({"GIFTWIRE_TIMEZONE": "Mars/Olympus"}, "GIFTWIRE_TIMEZONE"),
                       ({"GIFTWIRE_LIKE_LEVELS": "10,5"}, "GIFTWIRE_LIKE_LEVELS"),
                       ({"GIFTWIRE_RISK_ENABLED": "maybe"}, "GIFTWIRE_RISK_ENABLED"),
                       ({"GIFTWIRE_LOG_FORMAT": "xml"}, "GIFTWIRE_LOG_FORMAT"),
                       ({"GIFTWIRE_DURABILITY": "weird"}, "GIFTWIRE_DURABILITY"),
                       ({"GIFTWIRE_TOKEN_TTL_S": "0"}, "GIFTWIRE_TOKEN_TTL_S"),
                       ({"GIFTWIRE_AUTH_TIMEOUT_S": "-5"}, "GIFTWIRE_AUTH_TIMEOUT_S"),
                       # digits are ASCII: full-width, Arabic-Indic, `_` and spaces are no number
                       ({"GIFTWIRE_GIFTS_PER_DAY": "５"}, "GIFTWIRE_GIFTS_PER_DAY"),
                       ({"GIFTWIRE_GIFTS_PER_DAY": "٣"}, "GIFTWIRE_GIFTS_PER_DAY"),
                       ({"GIFTWIRE_REQUESTS_PER_S": "1_0"}, "GIFTWIRE_REQUESTS_PER_S"),
                       ({"GIFTWIRE_PAIR_GIFTS_PER_DAY": " 5 "}, "GIFTWIRE_PAIR_GIFTS_PER_DAY"),
                       # past what Lua holds exactly, or what int() reads without a traceback
                       ({"GIFTWIRE_GIFTS_PER_DAY": "9" * 5000}, "GIFTWIRE_GIFTS_PER_DAY"),
                       ({"GIFTWIRE_GIFTS_PER_DAY": "10" + "0" * 19}, "GIFTWIRE_GIFTS_PER_DAY"),
                       ({"GIFTWIRE_AMOUNT_MAX": "1" + "0" * 15}, "GIFTWIRE_AMOUNT_MAX"),
                       # a festival price below the count would pay a gift with cards from nothing
                       ({"GIFTWIRE_FESTIVAL_COST_NUM": "1"}, "GIFTWIRE_FESTIVAL_COST_NUM"),
                       ({"GIFTWIRE_PARTITION_LEASE_MS": "10" + "0" * 15},
                        "GIFTWIRE_PARTITION_LEASE_MS"),
                       ({"GIFTWIRE_WORKER_BLOCK_MS": "30000"}, "GIFTWIRE_WORKER_BLOCK_MS"),
                       # at 0 a gateway answers /health and refuses every request
                       ({"GIFTWIRE_HANDSHAKES_MAX": "0"}, "GIFTWIRE_HANDSHAKES_MAX"),
                       ({"GIFTWIRE_CONNECTIONS_PER_USER_MAX": "0"}, "GIFTWIRE_CONNECTIONS_PER_USER_MAX"),
                       ({"GIFTWIRE_STREAM_BACKLOG_MAX": "0"}, "GIFTWIRE_STREAM_BACKLOG_MAX"),
                       ({"GIFTWIRE_ADMIN_KEY": "b"}, "GIFTWIRE_ADMIN_KEY"),
                       ({"GIFTWIRE_TOKEN_SECRET": "short"}, "GIFTWIRE_TOKEN_SECRET"),
                       ({"REDIS_URL": "http://x"}, "REDIS_URL"),
                       ({"REDIS_URL": "redis://127.0.0.1:notaport"}, "REDIS_URL")):
        out = giftwire("token", "alice", "--data-dir", data, **env)
        assert out.returncode == 1 and named in out.stderr, (env, out.stderr)
        assert "Traceback" not in out.stderr
        assert len(out.stderr.strip().splitlines()) == 1, out.stderr


def test_a_gateway_on_an_unreachable_redis_exits_1_with_one_line() -> None:
    """`giftwire gateway` on a Redis that does not answer (in its wait) exits 1 naming it, no traceback."""
    out = giftwire("gateway", "--data-dir", str(short_tmpdir()), REDIS_URL="redis://127.0.0.1:1")
    assert out.returncode == 1, out.stderr
    assert "Traceback" not in out.stderr and "does not answer" in out.stderr, out.stderr


def test_ctrl_c_while_waiting_for_redis_exits_without_a_traceback() -> None:
    """SIGINT during the start-up wait for an unreachable Redis ends in one line and exit 130."""
    proc = subprocess.Popen([sys.executable, "-m", "server.cli", "gateway", "--data-dir",
                             str(short_tmpdir())],
                            env={**os.environ, "REDIS_URL": "redis://127.0.0.1:1"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(2.0)  # well inside the 10 s wait
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "interrupted" in err, err


def test_serve_on_an_unusable_data_dir_exits_1_with_a_message() -> None:
    """A data dir that cannot be made (under a file, here) stops serve with one line, not a traceback."""
    blocker = short_tmpdir() / "a-file"
    blocker.write_text("")
    out = giftwire("serve", "--port", "0", "--data-dir", str(blocker / "data"))
    assert out.returncode == 1 and "cannot use the data dir" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr


def test_a_cluster_flag_on_a_redis_that_is_no_cluster_is_one_line(
        fresh_valkey: Callable[..., EmbeddedValkey]) -> None:
    """`--redis-cluster` on a plain Valkey stops worker and gateway with one line (exit 1), no traceback."""
    # `audit` of an unreachable cluster is exit 2 (not a verdict), never a traceback; a password in REDIS_URL
    # is not printed.
    vk = fresh_valkey()
    for command in ("worker", "gateway"):
        out = giftwire(command, "--redis-cluster", "--data-dir", str(short_tmpdir()),
                       REDIS_URL=vk.url)
        assert out.returncode == 1, (command, out.stderr)
        assert "is not a node of a Redis Cluster" in out.stderr and "Traceback" not in out.stderr
    audit = giftwire("audit", "--redis-cluster", "--data-dir", str(short_tmpdir()),
                     REDIS_URL="redis://:sekret@127.0.0.1:1")
    assert audit.returncode == 2 and "unreachable" in audit.stderr, audit.stderr
    assert "Traceback" not in audit.stderr and "sekret" not in audit.stderr, audit.stderr


def test_a_data_dir_too_deep_for_a_socket_is_found_again_by_audit() -> None:
    """A data dir too long for a unix socket: `giftwire audit --data-dir` finds its Valkey's socket."""
    # The socket is in one private dir named after the data dir (the same each time, so restarts
    # leave nothing new behind), mode 0700.
    deep = short_tmpdir() / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    vk = EmbeddedValkey(deep)
    assert len(str(deep / "valkey.sock")) > 104 and vk.socket == EmbeddedValkey(deep).socket
    assert vk.socket.parent.stat().st_mode & 0o777 == 0o700
    vk.start()
    try:
        out = giftwire("audit", "--data-dir", str(deep))
        assert out.returncode == 0 and "audit passed" in out.stdout, (out.stdout, out.stderr)
    finally:
        vk.stop()


def test_audit_without_a_reachable_redis_exits_2_not_1() -> None:
    """`giftwire audit` exits 1 only for a broken invariant: an unreachable Redis is 2."""
    out = giftwire("audit", "--data-dir", str(short_tmpdir()))
    assert out.returncode == 2 and "unreachable" in out.stderr, out.stderr


async def test_health_follows_redis(own_server: OwnServer) -> None:
    """/health is 200 while Redis answers and 503 once it is gone."""
    srv, vk = own_server()
    async with httpx.AsyncClient(base_url=srv.http) as c:
        assert (await c.get("/health")).status_code == 200
        vk.kill()
        await asyncio.sleep(0.1)
        r = await c.get("/health")
    assert r.status_code == 503 and r.json()["status"] == "unavailable"


async def test_a_request_meeting_a_hung_redis_is_answered_not_a_traceback(
        own_server: OwnServer) -> None:
    """A gift meeting a hung Valkey (SIGSTOP) is answered `unavailable`, never dropped with a traceback."""
    # The answer is `error unavailable`, or the connection closed 1011 `unavailable`; never dropped with
    # uvicorn's traceback in the log.
    srv, vk = own_server({"GIFTWIRE_WORKER_PROCESSES": "1"})
    async with Admin(srv) as admin:
        s, r = await admin.pair(5)
    c = await Client.connect(srv.ws, srv.token(s))
    assert vk.process is not None
    vk.process.send_signal(signal.SIGSTOP)
    try:
        try:
            reply = await c.send_gift(r, "note.do", 1, timeout_s=30)
            assert (reply["type"], reply.get("code")) == ("error", "unavailable"), reply
        except ConnectionError as closed:  # (the client's: the close it received)
            assert "received 1011 (internal error) unavailable" in str(closed), closed
    finally:
        vk.process.send_signal(signal.SIGCONT)
        await c.close()
    log = srv.log_path.read_text()
    assert "Traceback" not in log and "Exception in ASGI" not in log, log[-3000:]


async def test_a_connection_while_redis_is_away_closes_1011(own_server: OwnServer) -> None:
    """With Redis gone a new WebSocket is closed 1011, no traceback logged; once Redis is back it connects."""
    # 1011 tells the client to reconnect later.
    srv, vk = own_server()
    user = uid("u")
    vk.kill()
    with pytest.raises(websockets.ConnectionClosed) as closed:
        await Client.connect(srv.ws, srv.token(user), timeout_s=5)
    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1011, "unavailable")
    log = srv.log_path.read_text()
    assert "Traceback" not in log and "Redis unavailable" in log, log[-3000:]
    vk.start()
    for _ in range(50):  # the hub's subscription comes back with Redis
        try:
            async with await Client.connect(srv.ws, srv.token(user), timeout_s=5) as c:
                assert (await c.request("ping"))["type"] == "pong"
            break
        except websockets.ConnectionClosed:
            await asyncio.sleep(0.2)
    else:
        raise AssertionError("no connection after Redis came back")


async def test_serve_starts_its_embedded_valkey_again_when_it_dies() -> None:
    """serve restarts its SIGKILLed embedded Valkey on its files: /health, balances and gifts come back."""
    # The log says what happened.
    data = short_tmpdir()
    srv = Proc("serve", data, {"REDIS_URL": ""}).start()
    try:
        admin = Admin(srv)
        s, r = await admin.pair(10)
        async with await Client.connect(srv.ws, srv.token(s)) as a:
            assert (await a.send_gift(r, "note.do", 3))["type"] == "gift.confirmed"
        await asyncio.sleep(1.2)  # appendfsync everysec: on disk
        [valkey] = [p for p in processes_with(str(data)) if "valkey" in proc_cmdline(p)]
        os.kill(valkey, signal.SIGKILL)
        deadline = time.monotonic() + 20
        async with httpx.AsyncClient(base_url=srv.http, timeout=5) as http:
            while (await http.get("/health")).status_code != 200:
                assert time.monotonic() < deadline, "Valkey was not started again"
                await asyncio.sleep(0.2)
        [again] = [p for p in processes_with(str(data)) if "valkey" in proc_cmdline(p)]
        assert again != valkey
        assert await admin.balances(s) == {"note.do": 7}
        async with await Client.connect(srv.ws, srv.token(s)) as a:
            reply = await a.send_gift(r, "note.do", 2, timeout_s=15)
        assert (reply["type"], reply["balance"]) == ("gift.confirmed", 5)
        await admin.close()
        assert "embedded Valkey exited" in srv.log_path.read_text()
    finally:
        assert srv.stop() == 0
    assert not [p for p in processes_with(str(data)) if "valkey" in proc_cmdline(p)]


async def test_worker_rides_out_a_redis_restart(own_server: OwnServer) -> None:
    """Redis killed and restarted on the same data dir: the server keeps settling gifts afterwards."""
    srv, vk = own_server()
    async with Admin(srv) as admin:
        s, r = await admin.pair(10)
        async with await Client.connect(srv.ws, srv.token(s)) as a:
            assert (await a.send_gift(r, "note.do", 1))["type"] == "gift.confirmed"
        await asyncio.sleep(1.2)  # appendfsync everysec
        vk.kill()
        await asyncio.sleep(0.5)
        vk.start()
        await asyncio.sleep(0.5)
        async with await Client.connect(srv.ws, srv.token(s)) as a:
            reply = await a.send_gift(r, "note.do", 1, timeout_s=15)
        assert (reply["type"], reply["balance"]) == ("gift.confirmed", 8)


async def test_sigterm_tells_clients_to_reconnect(own_server: OwnServer) -> None:
    """SIGTERM closes every client with 4000 (reconnect elsewhere), lets none back in, and exits 0."""
    from websockets.exceptions import ConnectionClosed

    from protocol.errors import close_code

    srv, _ = own_server()
    async with await Client.connect(srv.ws, srv.token("leaver")) as c:
        srv.signal(15)
        try:
            await c.next_event(timeout_s=10)
        except ConnectionError:
            pass
        assert isinstance(c._error, ConnectionClosed) and c._error.rcvd is not None
        assert c._error.rcvd.code == close_code("shutdown").code
    try:  # told to reconnect elsewhere, a client must not get back in to the draining server
        again = await Client.connect(srv.ws, srv.token("leaver"))
    except (OSError, ConnectionError) as exc:  # refused, or closed at once with 4000
        assert "4000" in str(exc) or isinstance(exc, OSError), exc
    else:
        await again.close()
        raise AssertionError("a draining server let a client back in")
    assert srv.wait() == 0


async def test_worker_processes_serve_their_own_settlement_metrics() -> None:
    """With GIFTWIRE_WORKER_METRICS_PORT, serve's worker serves its settlement counters on `GET /metrics`."""
    # The gateway's own /metrics does not count them; anything else on that port is a 404.
    data = short_tmpdir()
    with socket.socket() as probe:  # a free port for the worker's listener
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    srv = Proc("serve", data, {"REDIS_URL": "", "GIFTWIRE_WORKER_PROCESSES": "1",
                               "GIFTWIRE_WORKER_METRICS_PORT": str(port)}).start()
    try:
        async with Admin(srv) as admin:
            s, r = await admin.pair(10)
            async with await Client.connect(srv.ws, srv.token(s)) as a:
                assert (await a.send_gift(r, "note.do", 2))["type"] == "gift.confirmed"
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            for _ in range(50):  # the worker process may still be binding its port
                try:
                    text = (await http.get("/metrics")).text
                    break
                except httpx.TransportError:
                    await asyncio.sleep(0.1)
            assert 'giftwire_gifts_settled_total{outcome="delivered"} 1' in text
            assert "giftwire_settlement_seconds_count 1" in text
            assert (await http.get("/other")).status_code == 404
        gateway_side = await metric(srv, "giftwire_gifts_settled_total")
        assert gateway_side == 0  # counted where the gift settled, once
    finally:
        assert srv.stop() == 0


async def test_serve_with_worker_processes_settles_and_stops_them() -> None:
    """serve with GIFTWIRE_WORKER_PROCESSES=2 settles in its own workers; its SIGTERM stops them too."""
    # A second serve on the same data dir is refused (exit 1) and the first goes on; after SIGTERM no giftwire
    # process of that data dir is left.
    data = short_tmpdir()
    srv = Proc("serve", data, {"REDIS_URL": "", "GIFTWIRE_WORKER_PROCESSES": "2"}).start()
    try:
        async with Admin(srv) as admin:
            pairs = [await admin.pair(10) for _ in range(4)]
            for s, r in pairs:
                async with await Client.connect(srv.ws, srv.token(s)) as a:
                    assert (await a.send_gift(r, "note.do", 2))["type"] == "gift.confirmed"
        assert len(processes_with(f"server.cli worker --data-dir {data}")) == 2
        second = await asyncio.to_thread(  # the same data dir: a 2nd Valkey on the same files
            subprocess.run,
            [sys.executable, "-m", "server.cli", "serve", "--port", "0", "--data-dir", str(data)],
            env={**os.environ, "REDIS_URL": ""}, capture_output=True, text=True, timeout=60)
        assert second.returncode == 1 and "in use by another giftwire serve" in second.stderr
        async with Admin(srv) as admin:  # the first one is untouched
            s, r = await admin.pair(10)
            async with await Client.connect(srv.ws, srv.token(s)) as a:
                assert (await a.send_gift(r, "note.do", 2))["type"] == "gift.confirmed"
    finally:
        assert srv.stop() == 0
    assert processes_with(f"--data-dir {data}") == []


async def test_serve_runs_the_risk_engine_in_a_jobs_process_and_stops_it() -> None:
    """With the risk engine on, serve runs one `giftwire jobs` process, restarts it, stops it on SIGTERM."""
    # It is started again when killed or stopped by someone else; with the engine off there is none.
    data, quiet = short_tmpdir(), short_tmpdir()
    srv = Proc("serve", data, {"REDIS_URL": "", "GIFTWIRE_WORKER_PROCESSES": "1",
                               "GIFTWIRE_RISK_ENABLED": "1"}).start()
    off = Proc("serve", quiet, {"REDIS_URL": ""}).start()
    try:
        async with Admin(srv) as admin:
            s, r = await admin.pair(10)
            async with await Client.connect(srv.ws, srv.token(s)) as a:
                assert (await a.send_gift(r, "note.do", 2))["type"] == "gift.confirmed"
        (jobs,) = processes_with(f"server.cli jobs --data-dir {data}")
        assert len(processes_with(f"server.cli worker --data-dir {data}")) == 1
        os.kill(jobs, signal.SIGKILL)  # an OOM kill: serve starts another
        deadline = time.monotonic() + 20
        while processes_with(f"server.cli jobs --data-dir {data}") in ([], [jobs]):
            assert time.monotonic() < deadline, "the jobs process was not started again"
            await asyncio.sleep(0.1)
        (again,) = processes_with(f"server.cli jobs --data-dir {data}")
        os.kill(again, signal.SIGTERM)  # stopped cleanly by someone: the engine must not stop
        deadline = time.monotonic() + 60
        while processes_with(f"server.cli jobs --data-dir {data}") in ([], [again]):
            assert time.monotonic() < deadline, "a jobs process stopped by SIGTERM stayed down"
            await asyncio.sleep(0.1)
        deadline = time.monotonic() + 20
        while processes_with(f"server.cli jobs --data-dir {quiet}"):
            assert time.monotonic() < deadline, "an idle jobs process stayed"
            await asyncio.sleep(0.1)
    finally:
        assert srv.stop() == 0 and off.stop() == 0
    assert processes_with(f"--data-dir {data}") == [] == processes_with(f"--data-dir {quiet}")


def proc_cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def processes_with(text: str) -> list[int]:
    """PIDs whose command line contains `text` (read from /proc: no pgrep needed)."""
    out = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue  # the process ended while we looked
        if text in args:
            out.append(int(cmdline.parent.name))
    return out


def test_serve_refuses_an_unsafe_configuration() -> None:
    """`giftwire serve` with a boost below 1× exits at once, saying why."""
    out = subprocess.run([sys.executable, "-m", "server.cli", "serve", "--data-dir", str(short_tmpdir())],
                         env={**os.environ, "GIFTWIRE_WISH_TIERS": "1000:1/2,*:3/1", "REDIS_URL": ""},
                         capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode != 0 and "wish tier" in out.stderr, out


async def test_serves_children_stop_when_serve_is_killed(
        fresh_valkey: Callable[..., EmbeddedValkey]) -> None:
    """When serve is SIGKILLed its worker and jobs processes stop by themselves within seconds."""
    # serve has no chance to stop its children; they must not run on alone.
    data = short_tmpdir()
    srv = Proc("serve", data, {"REDIS_URL": fresh_valkey().url, "GIFTWIRE_WORKER_PROCESSES": "1",
                               "GIFTWIRE_RISK_ENABLED": "1"}).start()
    try:
        children = processes_with(f"--data-dir {data}")
        assert len(children) == 3  # serve, its worker, its jobs process
        srv.signal(signal.SIGKILL)
        assert srv.wait() == -signal.SIGKILL
        deadline = time.monotonic() + 10
        while processes_with(f"--data-dir {data}"):
            assert time.monotonic() < deadline, processes_with(f"--data-dir {data}")
            await asyncio.sleep(0.1)
    finally:
        srv.stop()
        for pid in processes_with(f"--data-dir {data}"):  # only if the test failed: ours
            os.kill(pid, signal.SIGKILL)


async def test_a_killed_serve_takes_its_embedded_valkey_with_it() -> None:
    """A SIGKILLed serve's embedded Valkey stops too, and serve starts again on the same directory."""
    # Left running, the Valkey would hold the data directory and answer nobody.
    data = short_tmpdir()
    srv = Proc("serve", data, {"REDIS_URL": ""}).start()
    again: Proc | None = None
    try:
        started = [p for p in processes_with(str(data)) if p != srv.pid]
        assert processes_with("valkey") and set(processes_with("valkey")) & set(started)
        srv.signal(signal.SIGKILL)
        assert srv.wait() == -signal.SIGKILL
        deadline = time.monotonic() + 10
        while [p for p in started if p in processes_with(str(data))]:
            assert time.monotonic() < deadline, "serve's Valkey or workers outlived it"
            await asyncio.sleep(0.1)
        again = Proc("serve", data, {"REDIS_URL": ""}).start()
        async with httpx.AsyncClient() as http:
            assert (await http.get(f"http://127.0.0.1:{again.port}/health")).status_code == 200
    finally:
        srv.stop()
        if again is not None:
            assert again.stop() == 0
        for pid in processes_with(str(data)):  # only if the test failed: ours
            os.kill(pid, signal.SIGKILL)


def test_secrets_set_in_the_environment_are_not_written_nor_printed() -> None:
    """Secrets set in the environment are neither written to secrets.json nor printed."""
    # With both set nothing is generated; with the admin key set only the token secret is (and secrets.json
    # holds no key that would not work); a key the environment gave is never printed.
    data = short_tmpdir()
    both = giftwire("token", "alice", "--data-dir", str(data),
                    GIFTWIRE_TOKEN_SECRET="s" * 32, GIFTWIRE_ADMIN_KEY="k" * 24)
    assert both.returncode == 0 and both.stderr == "" and not (data / "secrets.json").exists()
    assert verify_token("s" * 32, both.stdout.strip(), time.time()) == "alice"
    one = giftwire("token", "bob", "--data-dir", str(data), GIFTWIRE_ADMIN_KEY="k" * 24)
    stored = Proc("token", data, {}).secrets
    assert set(stored) == {"token_secret"} and "k" * 24 not in one.stderr
    assert "generated development secrets" in one.stderr
    assert verify_token(stored["token_secret"], one.stdout.strip(), time.time()) == "bob"
    # the key is unset again later: generated then, and printed
    later = giftwire("token", "carol", "--data-dir", str(data))
    stored = Proc("token", data, {}).secrets
    assert set(stored) == {"token_secret", "admin_key"} and stored["admin_key"] in later.stderr
    # a key in the file that the environment now overrides is dropped from the file
    giftwire("token", "dave", "--data-dir", str(data), GIFTWIRE_ADMIN_KEY="k" * 24)
    assert set(Proc("token", data, {}).secrets) == {"token_secret"}


def test_token_refuses_a_lifetime_past_what_tokens_can_carry() -> None:
    """A `--ttl` whose expiry would take more than 12 digits is refused (exit 1)."""
    # Instead of printing a token the server would close as malformed.
    out = giftwire("token", "bob", "--ttl", "99999999999999999999", "--data-dir",
                   str(short_tmpdir()))
    assert out.returncode == 1 and "--ttl" in out.stderr and out.stdout == "", out


async def test_audit_of_a_corrupt_key_is_a_failure_not_an_unreachable_redis(
        fresh_valkey: Callable[..., EmbeddedValkey]) -> None:
    """A string in a balance key makes `giftwire audit` exit 1 (not giftwire's data), not 2 (unreachable)."""
    # The key was written by something else.
    vk = fresh_valkey()
    client = redis.Redis.from_url(vk.url)
    try:
        client.set(keys.user(uid()).balances, "corrupt")
    finally:
        client.close()
    code, out = await run_audit(vk.url)
    assert code == 1 and "corrupt or foreign key" in out and "unreachable" not in out, out


async def test_audit_of_a_balance_that_is_no_integer_names_it(
        fresh_valkey: Callable[..., EmbeddedValkey]) -> None:
    """A balance field holding no integer makes `giftwire audit` exit 1, one line naming key and field."""
    # It was a traceback.
    vk = fresh_valkey()
    key = keys.user(uid()).balances
    client = redis.Redis.from_url(vk.url)
    try:
        client.hset(key, "note.mi", "1.5")
    finally:
        client.close()
    code, out = await run_audit(vk.url)
    assert code == 1 and "corrupt or foreign key" in out and f"{key} field note.mi" in out, out
    assert "Traceback" not in out, out


def test_a_harness_killed_takes_its_server_with_it(
        fresh_valkey: Callable[..., EmbeddedValkey]) -> None:
    """A server started via `server.bench.GiftwireProcess` stops when its starter is SIGKILLed."""
    # The harness seam: the server stops by itself instead of running on alone.
    data = short_tmpdir()
    harness = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from pathlib import Path; from server.bench import GiftwireProcess\n"
         f"p = GiftwireProcess('serve', Path({str(data)!r}), {{'REDIS_URL': {fresh_valkey().url!r}}})"
         ".start()\nprint(p.pid, flush=True); time.sleep(120)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert harness.stdout is not None
        server_pid = int(harness.stdout.readline())
        assert processes_with(f"serve --data-dir {data}") == [server_pid]
        harness.kill()
        harness.wait(10)
        deadline = time.monotonic() + 15
        while processes_with(f"serve --data-dir {data}"):
            assert time.monotonic() < deadline, "the server outlived its harness"
            time.sleep(0.1)
    finally:
        harness.kill()
        harness.wait(10)
        assert harness.stdout is not None
        harness.stdout.close()
        for pid in processes_with(f"serve --data-dir {data}"):  # only if the test failed: ours
            os.kill(pid, signal.SIGKILL)


def test_a_wheel_carries_every_file_the_server_reads() -> None:
    """pyproject's package-data covers every `lua/`, the widget's files and the protocol's client."""
    # As setuptools matches them. A wheel (`pip install .`) without notes' or regions' scripts could not
    # start.
    import fnmatch
    import tomllib

    root = Path(__file__).resolve().parent.parent
    data = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    needed = [p for p in (root / "server").glob("*/lua/*.lua")]
    needed += [p for p in (root / "server" / "widget" / "static").iterdir() if p.is_file()]
    needed += [root / "protocol" / "js" / "giftwire.js", root / "protocol" / "asyncapi.json"]
    for path in needed:
        rel = path.relative_to(root)
        package = ".".join(rel.parts[:2]) if rel.parts[0] == "server" else rel.parts[0]
        inside = "/".join(rel.parts[2:] if rel.parts[0] == "server" else rel.parts[1:])
        patterns = data.get(package, []) + data.get("*", [])
        assert any(fnmatch.fnmatch(inside, pat) for pat in patterns), rel


def test_gateway_and_worker_say_they_stopped(fresh_valkey: Callable[..., EmbeddedValkey]) -> None:
    """SIGTERM ends `giftwire gateway` and `giftwire worker` cleanly, each with its stop line on stdout."""
    vk = fresh_valkey()
    for command, said in (("gateway", "giftwire: gateway stopped"), ("worker", " stopped")):
        proc = subprocess.Popen([sys.executable, "-m", "server.cli", command, "--port", "0",
                                 "--data-dir", str(short_tmpdir())] if command == "gateway" else
                                [sys.executable, "-m", "server.cli", command, "--data-dir",
                                 str(short_tmpdir())],
                                env={**os.environ, "REDIS_URL": vk.url},
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert proc.stdout is not None
            for line in proc.stdout:  # up once it says where it listens, or that it started
                if "listening on" in line or "started" in line:
                    break
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == 0, err
        assert out.strip().splitlines()[-1].endswith(said) and "Traceback" not in err, (out, err)
