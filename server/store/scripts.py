"""Loads the Lua scripts of each subsystem as a Valkey/Redis Functions library: the
files are the source of truth.

`Scripts.load("server.gifting")` gathers every `lua/<name>.lua` of that package (files
starting with `_` are its prelude) into one library: the generated `REJECT` function
(rejection messages from `protocol.errors`, its table built only when called),
`store/lua/_lib.lua` (arguments, the event log), `ledger/lua/_ledger.lua` (ledger
primitives), the package's own `_*.lua`, then each script as a function
`<name>_<version>(KEYS, ARGV)`, called with FCALL.

Why Functions and not EVALSHA: a library survives a restart and a failover (it is in
the AOF and replicated), so no NOSCRIPT storm follows one, and the prelude is defined
once when the library loads. The per-call time did not measurably change here (~33 µs
per step either way: `docs/perf/fcall_vs_evalsha.py`). The version is a hash of
the library's text, so processes of two releases never call each other's code; a
library is loaded on first use (FUNCTION LOAD on every primary) and again whenever
a server answers that the function is missing.
"""

from __future__ import annotations

import hashlib
import re
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any, Protocol

from redis.exceptions import ResponseError

from protocol.errors import REJECTIONS

PRELUDE_PACKAGES = ("server.store", "server.ledger")
VERSION_CHARS = 10  # of the library hash in its function names


class Script(Protocol):
    """One function of a library: call it with keys and args, or queue it on a pipeline
    with `client=`."""

    async def __call__(self, keys: list[str], args: list[Any], client: Any = None) -> Any: ...


def _lua_string(s: str) -> str:
    return "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _reject_function() -> str:
    rows = ", ".join(
        f"{c.code} = {{{_lua_string(c.message)}, {'true' if c.temporary else 'false'}}}"
        for c in REJECTIONS.values()
    )
    return ("local REJECT_TABLE = nil\n"
            "local function REJECT(code)\n"
            f"  if not REJECT_TABLE then REJECT_TABLE = {{{rows}}} end\n"
            "  return REJECT_TABLE[code]\n"
            "end\n")


def _lua_dir(package: str) -> Traversable:
    return resources.files(package).joinpath("lua")


def _preludes(package: str) -> list[tuple[str, str]]:
    """(file, text) of every prelude the package's library starts with."""
    packages = [*PRELUDE_PACKAGES] + ([package] if package not in PRELUDE_PACKAGES else [])
    return [(f"{pkg.replace('.', '/')}/lua/{f.name}", f.read_text(encoding="utf-8"))
            for pkg in packages
            for f in sorted(_lua_dir(pkg).iterdir(), key=lambda f: f.name)
            if f.name.startswith("_") and f.name.endswith(".lua")]


def script_names(package: str) -> list[str]:
    return sorted(f.name.removesuffix(".lua") for f in _lua_dir(package).iterdir()
                  if f.name.endswith(".lua") and not f.name.startswith("_"))


# a script's file name becomes a local function of the library, after the preludes: it must
# be a Lua name, and one no prelude defines (it would silently take that helper's place)
_SCRIPT_NAME = re.compile(r"[a-z][a-z0-9_]*")
_DEFINED = re.compile(r"^local function (\w+)|^local (\w+)\s*=", re.M)
# Lua's words and the globals a script uses: a script named so would break or shadow them
_RESERVED = {"and", "break", "do", "else", "elseif", "end", "false", "for", "function", "if",
             "in", "local", "nil", "not", "or", "repeat", "return", "then", "true", "until",
             "while", "redis", "cjson", "cmsgpack", "bit", "struct", "table", "string", "math",
             "type", "tonumber", "tostring", "pairs", "ipairs", "unpack", "next", "select",
             "error", "pcall", "assert", "KEYS", "ARGV", "setmetatable", "getmetatable",
             "rawget", "rawset", "os"}


def _parts(package: str) -> list[tuple[str, str, int]]:
    """The library body's parts in order: (file, text, lines the wrapper adds above the
    file's first line)."""
    names = script_names(package)
    preludes = [("(generated) REJECT", _reject_function()), *_preludes(package)]
    taken = {a or b for _, text in preludes for a, b in _DEFINED.findall(text)} | _RESERVED
    for n in names:
        if not _SCRIPT_NAME.fullmatch(n) or n in taken:
            raise ValueError(f"{package}: lua/{n}.lua cannot be a script: its name must be a "
                             f"Lua name (a-z, 0-9, _) no prelude defines "
                             f"({', '.join(sorted(taken))})")
    folder = package.replace(".", "/")
    return [(file, text, 0) for file, text in preludes] + [
        (f"{folder}/lua/{n}.lua",
         f"local function {n}(KEYS, ARGV)\n"
         f"{_lua_dir(package).joinpath(f'{n}.lua').read_text(encoding='utf-8')}\nend\n", 1)
        for n in names]


def library(package: str) -> tuple[str, dict[str, str]]:
    """The library text of a package and its functions' names (script name → function)."""
    names = script_names(package)
    body = "\n".join(text for _, text, _ in _parts(package))
    version = hashlib.sha1(body.encode()).hexdigest()[:VERSION_CHARS]
    functions = {n: f"{n}_{version}" for n in names}
    register = "".join(f"redis.register_function('{functions[n]}', function(keys, args) "
                       f"return {n}(keys, args) end)\n" for n in names)
    lib = f"giftwire_{package.rsplit('.', 1)[-1]}_{version}"
    return f"#!lua name={lib}\n{body}\n{register}", functions


def where(package: str, line: int) -> str:
    """`<file>:<line>` of line `line` of the package's library body, as Valkey numbers a
    compile error's line (a library is one text: its numbers name no file)."""
    start = 2  # (as Valkey numbers them: found by compiling one with an error, tested)
    for file, text, above in _parts(package):
        lines = text.count("\n") + 1  # each part joined to the next by one "\n"
        if line < start + lines:
            return f"{file}:{max(1, line - start + 1 - above)}"
        start += lines
    return f"line {line}"


_COMPILE_LINE = re.compile(r"user_function:(\d+):")


def is_missing(exc: BaseException) -> bool:
    """A server answered that a function (or its library) is not loaded there."""
    return isinstance(exc, ResponseError) and "function not found" in str(exc).lower()


class Library:
    def __init__(self, redis: Any, package: str) -> None:
        self.redis = redis
        self.package = package
        self.source, self.functions = library(package)

    async def load(self) -> None:
        """FUNCTION LOAD REPLACE on every primary: the name carries the version, so replacing
        is replacing with the same text (and two processes loading at once both succeed). A
        compile error names the file and line it is in."""
        try:
            await self.redis.function_load(self.source, replace=True)
        except ResponseError as exc:
            m = _COMPILE_LINE.search(str(exc))
            if m is None:
                raise
            raise ResponseError(f"{where(self.package, int(m[1]))}: {exc}") from exc


class Function:
    """A library function with EVALSHA's calling convention (`keys=`, `args=`, `client=`)."""

    def __init__(self, lib: Library, name: str) -> None:
        self.lib = lib
        self.name = name

    async def __call__(self, keys: list[str], args: list[Any], client: Any = None) -> Any:
        if client is not None:  # a pipeline: queue it (a missing library fails that call only)
            return client.fcall(self.name, len(keys), *keys, *args)
        try:
            return await self.lib.redis.fcall(self.name, len(keys), *keys, *args)
        except ResponseError as exc:
            if not is_missing(exc):
                raise
        await self.lib.load()  # a new or emptied server: load, then call once more
        return await self.lib.redis.fcall(self.name, len(keys), *keys, *args)


class Scripts:
    """Every script of the installed subsystems, by name (names are unique across them)."""

    def __init__(self, redis: Any) -> None:
        self.redis = redis
        self._by_name: dict[str, Function] = {}

    def load(self, package: str) -> None:
        lib = Library(self.redis, package)
        for name, function in lib.functions.items():
            if name in self._by_name:
                raise ValueError(f"two subsystems ship a script named {name!r}")
            self._by_name[name] = Function(lib, function)

    def __getitem__(self, name: str) -> Function:
        return self._by_name[name]

    def __contains__(self, name: str) -> bool:
        return name in self._by_name


def source(package: str, name: str) -> str:
    """The library text that carries script `name` (what FUNCTION LOAD sends)."""
    text, functions = library(package)
    if name not in functions:
        raise KeyError(f"{package} has no script {name!r}")
    return text
