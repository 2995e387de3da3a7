"""A group's dead letters: messages that used up their deliveries, kept until redriven."""

from __future__ import annotations


class DeadLetters:
    """seq -> (deliveries, dead_at, reason).

    Invariants (checked by `Group.violations`, which knows what the group holds):
    - a dead letter is held by the group with its delivery count;
    - it is neither leased nor waiting for a retry.
    """

    __slots__ = ("letters",)

    def __init__(self) -> None:
        self.letters: dict[int, tuple[int, int, str]] = {}

    def add(self, s: int, count: int, at: int, reason: str) -> None:
        self.letters[s] = (count, at, reason)

    def take(self, seqs: list[int] | None) -> list[int]:
        """Remove and return the chosen dead letters (all if None) that exist."""
        letters = self.letters
        chosen = list(letters) if seqs is None else [s for s in seqs if s in letters]
        for s in chosen:
            del letters[s]
        return chosen
