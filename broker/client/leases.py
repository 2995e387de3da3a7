"""Which held deliveries need their lease extended, and when (pure; time is passed in)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ferry.broker.models import Delivery


@dataclass
class Leases:
    """Deliveries received and not yet settled, with the moment each lease runs out.

    A lease is renewed once less than `margin` of it is left: half the visibility
    timeout, so a heartbeat that is late by almost that much still lands in time.
    """

    visibility_s: float
    held: dict[str, tuple[Delivery, float]] = field(default_factory=dict)

    @property
    def margin(self) -> float:
        return self.visibility_s / 2

    def __len__(self) -> int:
        return len(self.held)

    def __contains__(self, receipt: str) -> bool:
        return receipt in self.held

    def add(self, deliveries: list[Delivery], now: float) -> None:
        for delivery in deliveries:
            self.held[delivery.receipt] = (delivery, now + self.visibility_s)

    def drop(self, receipts: list[str]) -> None:
        for receipt in receipts:
            self.held.pop(receipt, None)

    def renewed(self, receipts: list[str], now: float) -> None:
        for receipt in receipts:
            if receipt in self.held:
                self.held[receipt] = (self.held[receipt][0], now + self.visibility_s)

    def due(self, now: float) -> list[str]:
        """Receipts whose lease has less than `margin` left at `now`."""
        return [r for r, (_, expires) in self.held.items() if expires - now <= self.margin]

    def next_due(self) -> float | None:
        """When the earliest lease gets due, or None when nothing is held."""
        if not self.held:
            return None
        return min(expires for _, expires in self.held.values()) - self.margin

    def receipts(self) -> list[str]:
        return list(self.held)
