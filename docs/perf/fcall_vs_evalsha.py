"""python docs/perf/fcall_vs_evalsha.py [BLOCKS] [ROUNDS] — the gift's steps as FCALL of
the library functions (what giftwire runs) against EVALSHA of one script per step that
carries the same prelude (the model before Functions), on one private Valkey, through the
same client and the same pipelined rounds as the worker (`Bench.gift_round`, 128 gifts a
round). Blocks of ROUNDS rounds alternate A/B, B/A, each block on 128 fresh sender/recipient
pairs (so both do the same work on the same amount of data); µs per call from INFO
commandstats.
Measurement only: it patches `server.store.scripts.Function` in this process."""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

import uvloop

from loadtest.ceilings import BENCH
from server.bench import Bench, EmbeddedValkey
from server.store import scripts as S

MODE = {"m": "fcall"}
BY_FUNCTION: dict[str, tuple[str, str]] = {}  # function name → (package, script name)
SHAS: dict[str, str] = {}
ORIGINAL_CALL = S.Function.__call__
ORIGINAL_LOAD = S.Scripts.load


def eval_source(package: str, name: str) -> str:
    """One step as an EVAL script: the prelude the library defines once, then the step."""
    body = S._lua_dir(package).joinpath(f"{name}.lua").read_text()
    return "\n".join([S._reject_function(), *S._preludes(package),
                      f"local function {name}(KEYS, ARGV)\n{body}\nend\n",
                      f"return {name}(KEYS, ARGV)\n"])


def load(self: S.Scripts, package: str) -> None:
    ORIGINAL_LOAD(self, package)
    for name, function in S.library(package)[1].items():
        BY_FUNCTION[function] = (package, name)


async def call(self: S.Function, keys: list[str], args: list[Any], client: Any = None) -> Any:
    if MODE["m"] == "fcall":
        return await ORIGINAL_CALL(self, keys, args, client)
    if self.name not in SHAS:
        SHAS[self.name] = await self.lib.redis.script_load(eval_source(*BY_FUNCTION[self.name]))
    if client is not None:
        return client.evalsha(SHAS[self.name], len(keys), *keys, *args)
    return await self.lib.redis.evalsha(SHAS[self.name], len(keys), *keys, *args)


async def stats(redis: Any) -> dict[str, tuple[int, int]]:
    st = await redis.info("commandstats")
    return {k: (v["calls"], v["usec"]) for k, v in st.items()}


async def main(blocks: int, rounds: int) -> None:
    S.Scripts.load = load  # type: ignore[method-assign]
    S.Function.__call__ = call  # type: ignore[method-assign]
    vk = EmbeddedValkey(Path(tempfile.mkdtemp(prefix="gwlt-fe-")))
    vk.start()
    out = []
    try:
        bench = Bench(vk.url, BENCH)
        tag = uuid.uuid4().hex[:6]

        async def pairs(name: str) -> tuple[list[str], list[str]]:
            senders = [f"fe{tag}{name}s{i}" for i in range(128)]
            recipients = [f"fe{tag}{name}r{i}" for i in range(128)]
            await bench.seed(senders, recipients)
            return senders, recipients

        for mode in ("fcall", "evalsha"):  # warm both: library and scripts loaded
            MODE["m"] = mode
            await bench.gift_round(*await pairs(f"w{mode}"), f"w{mode}")
        k = 0
        for b in range(blocks):
            for mode in ("fcall", "evalsha") if b % 2 == 0 else ("evalsha", "fcall"):
                MODE["m"] = mode
                senders, recipients = await pairs(f"b{b}{mode}")
                s0 = await stats(bench.redis)
                for _ in range(rounds):
                    await bench.gift_round(senders, recipients, f"k{k}")
                    k += 1
                s1 = await stats(bench.redis)
                key = f"cmdstat_{mode}"
                calls = s1[key][0] - s0.get(key, (0, 0))[0]
                usec = s1[key][1] - s0.get(key, (0, 0))[1]
                out.append({"block": b, "mode": mode, "calls": calls,
                            "us_per_call": round(usec / calls, 2),
                            "us_per_gift": round(usec / (rounds * len(senders)), 2)})
                print(json.dumps(out[-1]), flush=True)
        await bench.close()
    finally:
        vk.stop()
    for mode in ("fcall", "evalsha"):
        xs = [o["us_per_call"] for o in out if o["mode"] == mode]
        print(f"{mode}: median {statistics.median(xs):.1f} µs per call "
              f"(range {min(xs):.1f}–{max(xs):.1f}, {len(xs)} blocks)")


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 6,
                    int(sys.argv[2]) if len(sys.argv) > 2 else 40))
