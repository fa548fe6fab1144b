"""Loads the Lua scripts of each subsystem: the files are the source of truth.

`Scripts.load("server.gifting")` registers every `lua/<name>.lua` of that package
(files starting with `_` are its prelude). Each script is sent as: the generated
`REJECT` function (rejection messages from `protocol.errors`, built only when
called), `store/lua/_lib.lua` (arguments, the event log), `ledger/lua/_ledger.lua`
(ledger primitives), the package's own `_*.lua`, then the script. redis-py's
Script reloads a script on NOSCRIPT (e.g. after a Redis restart), so callers
never see it.
"""

from __future__ import annotations

from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any, Protocol

from protocol.errors import REJECTIONS

PRELUDE_PACKAGES = ("server.store", "server.ledger")


class Script(Protocol):
    """A registered script (redis-py's AsyncScript): call it with keys and args, or queue
    it on a pipeline with `client=`."""

    async def __call__(self, keys: list[str], args: list[Any], client: Any = None) -> Any: ...


def _lua_string(s: str) -> str:
    return "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _reject_function() -> str:
    rows = ", ".join(
        f"{c.code} = {{{_lua_string(c.message)}, {'true' if c.temporary else 'false'}}}"
        for c in REJECTIONS.values()
    )
    # a table literal costs ~11 µs to build per call: build it only on a rejection
    return ("local REJECT_TABLE = nil\n"
            "local function REJECT(code)\n"
            f"  if not REJECT_TABLE then REJECT_TABLE = {{{rows}}} end\n"
            "  return REJECT_TABLE[code]\n"
            "end\n")


def _lua_dir(package: str) -> Traversable:
    return resources.files(package).joinpath("lua")


def _preludes(package: str) -> list[str]:
    out = []
    packages = [*PRELUDE_PACKAGES] + ([package] if package not in PRELUDE_PACKAGES else [])
    for pkg in packages:
        out += [f.read_text() for f in sorted(_lua_dir(pkg).iterdir(), key=lambda f: f.name)
                if f.name.startswith("_") and f.name.endswith(".lua")]
    return out


def source(package: str, name: str) -> str:
    """The full text sent to Redis for one script."""
    body = _lua_dir(package).joinpath(f"{name}.lua").read_text()
    return "\n".join([_reject_function(), *_preludes(package), body])


def script_names(package: str) -> list[str]:
    return sorted(f.name.removesuffix(".lua") for f in _lua_dir(package).iterdir()
                  if f.name.endswith(".lua") and not f.name.startswith("_"))


class Scripts:
    """Every script of the installed subsystems, by name (names are unique across them)."""

    def __init__(self, redis: Any) -> None:
        self.redis = redis
        self._by_name: dict[str, Script] = {}

    def load(self, package: str) -> None:
        for name in script_names(package):
            if name in self._by_name:
                raise ValueError(f"two subsystems ship a script named {name!r}")
            self._by_name[name] = self.redis.register_script(source(package, name))

    def __getitem__(self, name: str) -> Script:
        return self._by_name[name]

    def __contains__(self, name: str) -> bool:
        return name in self._by_name
