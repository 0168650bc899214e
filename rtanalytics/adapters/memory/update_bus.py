"""Change notices within one process."""

from __future__ import annotations

from rtanalytics.ports.update_bus import ChangeHandler


class InProcessUpdateBus:
    def __init__(self) -> None:
        self._handlers: list[ChangeHandler] = []

    def publish(self, tenant: str, names: frozenset[str]) -> None:
        for handler in self._handlers:
            handler(tenant, names)

    def subscribe(self, handler: ChangeHandler) -> None:
        self._handlers.append(handler)
