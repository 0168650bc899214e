"""How change notices travel from where points are written to where subscribers wait.

Embedded, that is this process (`adapters/memory/update_bus.py`); distributed, the Pulsar updates
topic every service instance reads (SPEC §1).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

ChangeHandler = Callable[[str, frozenset[str]], None]


class UpdateBus(Protocol):
    def publish(self, tenant: str, names: frozenset[str]) -> None:
        """Say that these metrics of the tenant got points."""
        ...

    def subscribe(self, handler: ChangeHandler) -> None:
        """Call `handler(tenant, names)` for every notice, from this or any other instance."""
        ...
