"""The one list of subsystems. Each has a `module.py` whose `install(parts)` fills the
registries of `server.parts`; no shared code calls into a subsystem (the shared tables a
subsystem adds to, such as error codes and keys, are listed in the README's "Adding a
subsystem")."""

from __future__ import annotations

from typing import Protocol

from server.enterprise import module as enterprise
from server.gateway import session
from server.gifting import module as gifting
from server.groups import module as groups
from server.ledger import module as ledger
from server.notes import module as notes
from server.partners import module as partners
from server.parts import Parts
from server.popularity import module as popularity
from server.regions import module as regions
from server.risk import module as risk
from server.rooms import module as rooms
from server.settlement import module as settlement


class Module(Protocol):
    def install(self, p: Parts) -> None: ...


MODULES: tuple[Module, ...] = (session, settlement, ledger, gifting, rooms, groups, popularity, risk,
                                notes, partners, regions, enterprise)
