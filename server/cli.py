"""`giftwire serve | gateway | worker | jobs | token | partner-secret | audit`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Generator, Sequence
from pathlib import Path
from typing import Any

import uvicorn
import uvloop

from server import config
from server.config import Settings
from server.gateway.auth import EXPIRES_MAX_S, make_token
from server.gateway.http_limits import HandshakeLimits, http_protocol
from server.gifting.rules import is_valid_id
from server.lifetime import stop_when_parent_dies
from server.logs import configure as configure_logs
from server.metrics import serve_metrics
from server.secrets import Secrets, load_or_create
from server.store.embedded import EmbeddedValkey

log = logging.getLogger("giftwire")
WS_IMPL = "websockets-sansio"
DURABILITY = {"normal": "everysec", "strict": "always"}  # mode → the AOF's appendfsync
CHILD_STOP_S = 20.0  # a worker process finishes its batch within this after SIGTERM
CHILD_CHECK_S = 1.0  # how often serve looks for a child process that died
REDIS_WAIT_S = 10.0  # a Redis started beside a gateway or worker gets this long to answer
CHILD_BACKOFF_MAX_S = 60.0  # the longest wait before starting again a child that keeps dying


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: giftwire stops its parts in order."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def whole_seconds(text: str) -> int:
    """`--ttl`: whole seconds in ASCII digits (`config.whole_number`)."""
    if not config.whole_number(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of seconds")
    return int(text)


def _settings(args: argparse.Namespace) -> Settings:
    s = config.from_env(
        host=getattr(args, "host", None),
        port=getattr(args, "port", None),
        data_dir=Path(args.data_dir) if getattr(args, "data_dir", None) else None,
        durability=getattr(args, "durability", None),
        redis_cluster=True if getattr(args, "redis_cluster", False) else None,
    )
    if s.durability not in DURABILITY:
        sys.exit(f"giftwire: --durability (GIFTWIRE_DURABILITY) must be one of "
                 f"{', '.join(DURABILITY)}, not {s.durability!r}")
    for problem in config.problems(s):
        sys.exit(f"giftwire: {problem}")
    if not s.redis_cluster and is_cluster_node(s.redis_url):
        s = s.replace(redis_cluster=True)
    return s


def is_cluster_node(url: str) -> bool:
    """REDIS_URL names a node of a cluster (a cluster's bus needs TCP, so only redis[s]://)."""
    if not url.startswith(("redis://", "rediss://")):
        return False
    import redis

    try:
        client = redis.Redis.from_url(url, socket_timeout=5)
    except ValueError as exc:  # a URL redis-py cannot read
        sys.exit(f"giftwire: REDIS_URL {url!r} is not a Redis URL: {exc}")
    try:
        return bool(client.info("cluster").get("cluster_enabled"))
    except redis.RedisError:
        return False  # unreachable now: the commands report it with their own retries
    finally:
        client.close()


def check_durability(s: Settings) -> None:
    """In strict mode the Redis must fsync every write before it answers (and before it
    delivers the events the Lua steps publish): refuse to run otherwise."""
    if s.durability != "strict":
        return
    import redis

    client = redis.Redis.from_url(s.redis_url, decode_responses=True)
    try:
        mode = client.config_get("appendfsync").get("appendfsync")
        aof = client.config_get("appendonly").get("appendonly")
    except redis.RedisError as exc:
        sys.exit(f"giftwire: strict durability needs to read the Redis config ({exc})")
    finally:
        client.close()
    if (aof, mode) != ("yes", "always"):
        sys.exit("giftwire: strict durability needs the Redis to run with appendonly yes and "
                 f"appendfsync always (it has appendonly {aof}, appendfsync {mode})")


def _secrets(s: Settings) -> Secrets:
    sec = load_or_create(s.data_dir, s.token_secret, s.admin_key)
    if sec.created:
        print(f"giftwire: generated development secrets in {s.data_dir / 'secrets.json'}")
    if "admin_key" in sec.generated:  # never one the environment gave
        print(f"giftwire: admin key: {sec.admin_key}", flush=True)
    return sec


def _stop_event() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


def uvicorn_config(app: Any, host: str, port: int, ws_max_bytes: int = 65536,
                   handshake: HandshakeLimits | None = None) -> uvicorn.Config:
    """The gateway's uvicorn settings (the load test's echo ceiling uses the same).
    Per-message-deflate is off (CPU for tiny JSON frames); the message limit is ours,
    not uvicorn's 16 MiB. HTTP is h11 with our handshake bounds (http_limits), not
    `auto`: httptools would replace it if some package pulled it in."""
    limits = handshake or HandshakeLimits.of(Settings())
    return uvicorn.Config(
        app, host=host, port=port, log_level="warning", access_log=False, lifespan="on",
        http=http_protocol(limits), h11_max_incomplete_event_size=limits.head_max_bytes,
        ws=WS_IMPL, ws_max_size=ws_max_bytes, ws_per_message_deflate=False,
        ws_ping_interval=20.0, ws_ping_timeout=20.0, timeout_graceful_shutdown=5,
        timeout_keep_alive=limits.keep_alive_s,
        # the client's address is ours to decide (server/gateway/peers.py, trusted proxies
        # only): uvicorn would otherwise believe X-Forwarded-For from 127.0.0.1
        proxy_headers=False,
    )


async def _serve_http(s: Settings, with_worker: bool, children: list[Child] | None = None,
                      embedded: EmbeddedValkey | None = None) -> None:
    from server.app import build_app

    app = build_app(s, _secrets(s), with_worker)
    server = _Server(uvicorn_config(app, s.host, s.port, s.ws_max_bytes, HandshakeLimits.of(s)))
    stop = _stop_event()
    task = asyncio.create_task(server.serve())
    watch = asyncio.create_task(_supervise(children or [], embedded))
    while not server.started and not task.done():  # noqa: ASYNC110 - uvicorn has no started event
        await asyncio.sleep(0.01)
    if server.started:
        port = server.servers[0].sockets[0].getsockname()[1]
        print(f"giftwire: listening on http://{s.host}:{port}", flush=True)
    await asyncio.wait({task, asyncio.create_task(stop.wait())},
                       return_when=asyncio.FIRST_COMPLETED)
    watch.cancel()
    for listener in server.servers:  # no new connections: the clients told to reconnect
        listener.close()  # elsewhere must not come back here (open ones stay until drained)
    await app.state.gateway.drain()
    server.should_exit = True
    await task


@dataclasses.dataclass
class _Watched:
    """A process serve keeps running: its exit status (None while it runs), and how to
    start it again (its new pid)."""

    name: str
    exit_code: Callable[[], int | None]
    restart: Callable[[], int]
    started: float = 0.0
    dead_since: float | None = None
    wait: float = 0.0  # one that dies young waits longer each time (≤ CHILD_BACKOFF_MAX_S)


def _child_watch(children: list[Child], i: int) -> _Watched:
    def restart() -> int:
        command, _, own = children[i]
        children[i] = (command, start_worker_process(own, command), own)  # stopped at the end
        return children[i][1].pid

    return _Watched(children[i][0], lambda: children[i][1].poll(), restart)


async def _supervise(children: list[Child], embedded: EmbeddedValkey | None = None) -> None:
    """serve's children started again when one dies (an OOM kill, a crash): otherwise its
    work — settlement, or the risk engine the workers leave to `jobs` — would stop
    silently. serve starts `jobs` only when it has jobs to run, so any exit of it (a
    SIGTERM from someone, 0) is a death too. So is its embedded Valkey's: started again on
    its files (the append-only file keeps what was acknowledged), the gateway and the
    workers reconnect by themselves; without it nothing would settle until serve restarts."""
    loop = asyncio.get_running_loop()
    watched = [_child_watch(children, i) for i in range(len(children))]
    if embedded is not None:
        watched.insert(0, _Watched("embedded Valkey", embedded.exit_code, embedded.respawn))
    for w in watched:
        w.started = loop.time()
    while True:
        await asyncio.sleep(CHILD_CHECK_S)
        for w in watched:
            code = w.exit_code()
            if code is None:
                continue
            now = loop.time()
            if w.dead_since is None:  # just found dead: how long it lived sets the wait
                w.dead_since = now
                young = now - w.started < CHILD_BACKOFF_MAX_S
                w.wait = min(CHILD_BACKOFF_MAX_S, max(CHILD_CHECK_S, 2 * w.wait)) if young else 0.0
            if now - w.dead_since < w.wait:
                continue
            try:
                pid = w.restart()
            except OSError as exc:  # (no fork, no binary): try again after the next wait
                log.error("%s exited (%s) and could not be started again: %s", w.name, code, exc)
                w.dead_since, w.started = now, now
                continue
            log.warning("%s exited (%s); started again as process %d", w.name, code, pid)
            w.started, w.dead_since = now, None


def _lock_data_dir(data_dir: Path) -> Any:
    """Hold `data_dir` for this serve's lifetime (the lock goes with the process, even on
    SIGKILL): a second serve on it would start a second Valkey on the same append-only
    file. Returns the open lock file (keep it), or None when another serve holds it."""
    import fcntl

    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        lock = (data_dir / "serve.lock").open("a")
    except OSError as exc:  # read-only, or not ours: Valkey could not write there either
        sys.exit(f"giftwire: cannot use the data dir {data_dir}: {exc.strerror or exc}")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        lock.close()
        return None
    return lock


def cmd_serve(args: argparse.Namespace) -> int:
    die_with_parent()  # started by a harness that set it: stop with the harness
    s = _settings(args)
    embedded = None
    lock = None
    if not s.redis_url:
        lock = _lock_data_dir(s.data_dir)
        if lock is None:
            print(f"giftwire: {s.data_dir} is in use by another giftwire serve (its embedded "
                  "Valkey's files); stop it first or pass another --data-dir", file=sys.stderr,
                  flush=True)
            return 1
        embedded = EmbeddedValkey(s.data_dir, DURABILITY[s.durability],
                                  aof_rewrite_min_mb=s.aof_rewrite_min_mb)
        # a serve killed outright takes its Valkey with it (SIGTERM: Valkey writes its AOF
        # and exits), so a restart finds the data directory free; Valkey holds the lock too,
        # so a serve started again at once waits for the old Valkey to be gone
        embedded.start(stop_with_parent=True, keep_fds=(lock.fileno(),))
        s = s.replace(redis_url=embedded.url)
        print(f"giftwire: embedded Valkey at {embedded.url} (data in {s.data_dir})", flush=True)
    children: list[Child] = []
    try:
        if embedded is None:
            s = _reachable(s)
        check_durability(s)
        if s.jobs_process and _apart_jobs(s):  # a process of their own; workers leave them
            s = s.replace(apart_jobs=False)
            own = s.replace(worker_metrics_port=_child_port(s, s.worker_processes))
            children.append(("jobs", start_worker_process(own, "jobs"), own))
        # in their own processes the workers take no CPU (or GC pauses) from the gateway's loop
        if s.worker_processes > s.partitions:
            print(f"giftwire: {s.worker_processes} worker processes for {s.partitions} "
                  f"partition(s): one worker reads a partition at a time, so "
                  f"{s.worker_processes - s.partitions} stand by (raise GIFTWIRE_PARTITIONS "
                  f"to settle in parallel)", flush=True)
        for i in range(s.worker_processes):
            own = s.replace(worker_metrics_port=_child_port(s, i))
            children.append(("worker", start_worker_process(own), own))
        uvloop.run(_serve_http(s, with_worker=not s.worker_processes, children=children,
                               embedded=embedded))
    finally:
        for _, proc, _ in children:  # after the gateway drained: each finishes and acks its batch
            stop_child(proc)
        if embedded:
            embedded.stop()
        if lock is not None:
            lock.close()  # (the process's end would release it anyway)
    print("giftwire: stopped", flush=True)
    return 0


def _apart_jobs(s: Settings) -> list[str]:
    """The periodic jobs that run apart from settlement with these settings (no Redis call:
    the registries are filled, nothing is run)."""
    from server import parts
    from server.app import connect

    p = parts.build(s, connect(s.redis_url or "redis://127.0.0.1:1", s.redis_cluster))
    return [job.name for job in p.periodic.jobs if job.apart]


Child = tuple[str, subprocess.Popen[bytes], Settings]  # serve's child: command, process, its settings


def _child_port(s: Settings, index: int) -> int:
    """serve's child number `index` serves its /metrics on the port after the base (workers
    first, then `jobs`), or none."""
    return s.worker_metrics_port + index if s.worker_metrics_port else 0


def start_worker_process(s: Settings, command: str = "worker") -> subprocess.Popen[bytes]:
    """`giftwire worker` (or `jobs`) as serve's child, on serve's Redis."""
    env = {**os.environ, "REDIS_URL": s.redis_url,
           "GIFTWIRE_REDIS_CLUSTER": "1" if s.redis_cluster else "0",
           "GIFTWIRE_APART_JOBS": "1" if s.apart_jobs else "0", PARENT_ENV: str(os.getpid()),
           "GIFTWIRE_HOST": s.host,  # (serve's --host: where their /metrics listen)
           "GIFTWIRE_WORKER_METRICS_PORT": str(s.worker_metrics_port)}
    # its own session: a Ctrl-C reaches serve, which stops the workers in order
    return subprocess.Popen([sys.executable, "-m", "server.cli", command, "--data-dir",
                             str(s.data_dir)], env=env, start_new_session=True)


def stop_child(proc: subprocess.Popen[bytes], timeout_s: float = CHILD_STOP_S) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _require_redis(s: Settings) -> Settings:
    if not s.redis_url:
        sys.exit("giftwire: set REDIS_URL to the Redis that `giftwire serve` or your ops run")
    return _reachable(s)


def _reachable(s: Settings) -> Settings:
    """`s` once its Redis answers (see `wait_for_redis`), a cluster node recognised as one
    (`_settings` could not tell while it was still starting)."""
    wait_for_redis(s.redis_url)
    if not s.redis_cluster and is_cluster_node(s.redis_url):
        s = s.replace(redis_cluster=True)
    return s


def wait_for_redis(url: str, wait_s: float = REDIS_WAIT_S) -> None:
    """Start only on a Redis that answers: one started beside us gets `wait_s` to come up;
    then one line and exit 1 (an unreachable Redis is an operator's error, not a bug)."""
    import redis

    deadline = time.monotonic() + wait_s
    while True:
        try:
            client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        except ValueError as exc:  # a URL redis-py cannot read
            sys.exit(f"giftwire: REDIS_URL {url!r} is not a Redis URL: {exc}")
        try:
            client.ping()
            return
        except redis.RedisError as exc:
            if time.monotonic() >= deadline:
                sys.exit(f"giftwire: Redis at {url} does not answer ({exc}); start it, or fix "
                         f"REDIS_URL")
        finally:
            client.close()
        time.sleep(0.5)


def cmd_gateway(args: argparse.Namespace) -> int:
    die_with_parent()
    s = _require_redis(_settings(args))
    check_durability(s)
    uvloop.run(_serve_http(s, with_worker=False))
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    return _worker(args, jobs_only=False)


def cmd_jobs(args: argparse.Namespace) -> int:
    return _worker(args, jobs_only=True)


PARENT_ENV = "GIFTWIRE_PARENT_PID"  # set by serve on its children (and by bench's harness)


def die_with_parent() -> None:
    """A child of serve stops (SIGTERM: it finishes its batch) when serve dies, even by
    SIGKILL: otherwise it would run on, alone, against a Redis nobody else uses."""
    parent = os.environ.get(PARENT_ENV)
    if parent:
        stop_when_parent_dies(int(parent))


def _worker(args: argparse.Namespace, jobs_only: bool) -> int:
    from server.app import connect_parts, make_worker

    die_with_parent()

    s = _require_redis(_settings(args))
    check_durability(s)

    async def main() -> None:
        from server.app import quiet_gc

        p = connect_parts(s)
        worker = make_worker(p)
        await p.clock.sync()
        clock = asyncio.create_task(p.clock.follow())
        quiet_gc()
        stop = _stop_event()
        if jobs_only:
            names = [job.name for job in p.periodic.jobs if job.apart]
            if not names:  # e.g. the risk engine is off: nothing to keep a process for
                print("giftwire: no job runs apart from settlement; jobs exits", flush=True)
                clock.cancel()
                await p.aclose()
                return
            task = asyncio.create_task(worker.run_jobs())
            print(f"giftwire: jobs {', '.join(names)} started", flush=True)
        else:
            task = asyncio.create_task(worker.run(burst=args.burst))
            print(f"giftwire: worker {worker.name} started", flush=True)
        listener = None
        if s.worker_metrics_port:
            try:
                listener = await serve_metrics(s.host, s.worker_metrics_port)
                print(f"giftwire: metrics on http://{s.host}:{s.worker_metrics_port}/metrics",
                      flush=True)
            except OSError as exc:  # settlement matters more than its counters: go on
                log.error("metrics not served on port %d: %s", s.worker_metrics_port, exc)
        await asyncio.wait({task, asyncio.create_task(stop.wait())},
                           return_when=asyncio.FIRST_COMPLETED)
        worker.stop()
        await task
        if listener is not None:
            listener.close()
        clock.cancel()
        await p.aclose()

    uvloop.run(main())
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    s = _settings(args)
    ttl = s.token_ttl_s if args.ttl is None else args.ttl  # GIFTWIRE_TOKEN_TTL_S by default
    if not is_valid_id(args.user):
        sys.exit(f"giftwire: {args.user!r} is not a user id (1–64 letters, digits, _ or -)")
    named = "--ttl" if args.ttl is not None else "GIFTWIRE_TOKEN_TTL_S"
    if ttl < 1:
        sys.exit(f"giftwire: {named} must be at least 1 second")
    if int(time.time()) + ttl > EXPIRES_MAX_S:  # a longer expiry is a malformed token
        sys.exit(f"giftwire: {named} {ttl} ends after {EXPIRES_MAX_S} (12 digits of Unix seconds)")
    sec = load_or_create(s.data_dir, s.token_secret, s.admin_key)
    if sec.created:  # the first command on this data dir: say so where serve would (stdout
        # is the token's alone, so on stderr)
        print(f"giftwire: generated development secrets in {s.data_dir / 'secrets.json'}",
              file=sys.stderr, flush=True)
    if "admin_key" in sec.generated:
        print(f"giftwire: admin key: {sec.admin_key}", file=sys.stderr, flush=True)
    secret = sec.token_secret if args.partner is None else _partner_secret(s, args.partner)
    print(make_token(secret, args.user, int(time.time()) + ttl))
    return 0


def _partner_secret(s: config.Settings, channel: str) -> str:
    """The secret partner app `channel` signs its users' tokens with (exits if none is set up)."""
    from server.partners import rules

    partners = rules.parse(s.partners)
    if isinstance(partners, str):
        sys.exit(f"giftwire: GIFTWIRE_PARTNERS: {partners}")
    if channel not in partners:
        sys.exit(f"giftwire: no partner {channel!r} in GIFTWIRE_PARTNERS "
                 f"({', '.join(partners) or 'none set'})")
    sec = load_or_create(s.data_dir, s.token_secret, s.admin_key)
    if sec.created:  # stdout is the secret's alone, so on stderr
        print(f"giftwire: generated development secrets in {s.data_dir / 'secrets.json'}",
              file=sys.stderr, flush=True)
    return rules.secrets_of(partners, s.partner_secrets, sec.token_secret)[channel]


def cmd_partner_secret(args: argparse.Namespace) -> int:
    print(_partner_secret(_settings(args), args.channel))
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    from server.app import connect
    from server.audits import full_audit

    s = _settings(args)
    url = s.redis_url or EmbeddedValkey(s.data_dir).url

    async def main() -> int:
        from redis.exceptions import RedisError, ResponseError

        client = connect(url, s.redis_cluster)
        try:
            result, text = await full_audit(client, s.replace(redis_url=url))
        except ResponseError as exc:  # Redis answered: a key holds what giftwire never wrote
            print(f"giftwire: audit failed: Redis refused to read giftwire's data as giftwire "
                  f"writes it (a corrupt or foreign key): {exc}", file=sys.stderr)
            return 1
        except ValueError as exc:  # read, but not what giftwire writes (JSON errors included)
            print(f"giftwire: audit failed: a key holds data giftwire never writes there "
                  f"(a corrupt or foreign key): {exc}", file=sys.stderr)
            return 1
        except (RedisError, OSError) as exc:  # not a verdict: 2, never 1 (an invariant broke)
            print(f"giftwire: cannot audit, Redis at {url} is unreachable: {exc}", file=sys.stderr)
            return 2
        finally:
            await client.aclose()
        print(text)
        return 0 if result.ok else 1

    return uvloop.run(main())


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="giftwire", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    def add(name: str, helptext: str, http: bool = False) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=helptext)
        sp.add_argument("--data-dir", help="secrets and the embedded server's files")
        sp.add_argument("--redis-cluster", action="store_true",
                        help="REDIS_URL names a node of a Redis/Valkey Cluster")
        if http:
            sp.add_argument("--host")
            sp.add_argument("--port", type=int)
        return sp

    for sp in (add("serve", "gateway + worker (+ embedded Valkey without REDIS_URL)", http=True),
               add("gateway", "the WebSocket gateway and admin API alone", http=True)):
        sp.add_argument("--durability", choices=list(DURABILITY),
                        help="strict: a gift is confirmed only once it is on disk")
    wk = add("worker", "the settlement worker alone")
    wk.add_argument("--burst", action="store_true", help="exit when there is nothing left to settle")
    wk.add_argument("--durability", choices=list(DURABILITY))
    add("jobs", "the periodic jobs that stand apart from settlement (the risk engine) alone")
    tok = add("token", "print a development token for USER")
    tok.add_argument("user")
    tok.add_argument("--ttl", type=whole_seconds,
                     help="seconds (default GIFTWIRE_TOKEN_TTL_S, 86400)")
    tok.add_argument("--partner", metavar="CHANNEL",
                     help="signed as partner app CHANNEL signs its users' tokens")
    ps = add("partner-secret", "print the secret partner app CHANNEL signs its users' tokens with")
    ps.add_argument("channel")
    add("audit", "check the ledger invariants; exit 1 naming any that broke")
    return p


COMMANDS: dict[str, Any] = {
    "serve": cmd_serve, "gateway": cmd_gateway, "worker": cmd_worker, "jobs": cmd_jobs,
    "token": cmd_token, "partner-secret": cmd_partner_secret, "audit": cmd_audit,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        env = config.from_env()
    except config.SettingError as exc:  # a mistyped setting: say which, no traceback
        sys.exit(f"giftwire: {exc}")
    configure_logs(env.log_level, env.log_format)
    return int(COMMANDS[args.command](args))


if __name__ == "__main__":
    sys.exit(main())
