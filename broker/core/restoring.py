"""What a group knows from the store about messages its cursor has not reached yet."""

from __future__ import annotations


class Restoring:
    """Settled-ahead sets, restored delivery counts and which seqs have count rows.

    - `acked_skip`: restored acks ahead of the cursor; the cursor skips them.
    - `held_skip`: seqs held ahead of the cursor (restored dead letters, messages
      given a new priority); the cursor skips them too.
    - `prior`: seq -> (deliveries, visible_at) restored from a count row, taken
      when the cursor reaches the seq.
    - `persisted`: seqs with a delivery-count row in the store, deleted with the
      row on ack, redrive or retention.

    Invariants (checked by `Group.violations`, which knows what the group holds):
    - an acked seq is not held;
    - a seq with a count row is held or has a restored count.
    """

    __slots__ = ("acked_skip", "held_skip", "persisted", "prior")

    def __init__(self) -> None:
        self.acked_skip: set[int] = set()
        self.held_skip: set[int] = set()
        self.prior: dict[int, tuple[int, int]] = {}
        self.persisted: set[int] = set()

    def forget(self, s: int) -> None:
        self.acked_skip.discard(s)
        self.held_skip.discard(s)
        self.prior.pop(s, None)
        self.persisted.discard(s)
