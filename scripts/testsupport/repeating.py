"""An action repeated on a background thread while a block runs (a kubelet's sync pass, a
progress tick), stopped and joined when the block ends."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager


@contextmanager
def repeating(action: Callable[[], None], every: float, what: str,
              join_timeout: float | None = None) -> Iterator[None]:
    """Call `action` every `every` seconds until the block ends. An exception from `action`
    stops the repeats and is raised, as the cause of "`what` failed", when the block ends
    (unless the block itself raised); an action that must keep going catches its own."""
    done = threading.Event()
    failed: list[BaseException] = []

    def loop() -> None:
        while not done.wait(every):
            try:
                action()
            except Exception as error:  # surfaced in the block's own thread below
                failed.append(error)
                return

    thread = threading.Thread(target=loop, name=what, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join(join_timeout)
    if failed:
        raise RuntimeError(f"{what} failed") from failed[0]
