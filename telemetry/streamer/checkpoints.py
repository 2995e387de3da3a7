"""Where a streamer got to, saved after every acknowledged publish so a restart resumes there.

Rows between the last checkpoint and a crash are published again on restart; their
content-derived dedup ids make that harmless (the broker and the store see them once).
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class CheckpointError(Exception):
    """A checkpoint that cannot be used: unreadable, or written by a differently split run."""


class Checkpoint(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int = 1
    instance_index: int
    instance_count: int
    loop: int = 0
    done: dict[str, int] = Field(
        default_factory=dict, description="file name -> records fully handled in this loop"
    )
    published: int = 0
    messages: int = Field(0, description="messages those rows were published in")
    bad: int = 0
    others: int = Field(0, description="rows left to the other instances")


def load(path: Path, index: int, count: int) -> Checkpoint:
    if not path.exists():
        return Checkpoint(instance_index=index, instance_count=count)
    try:
        ck = Checkpoint.model_validate_json(path.read_bytes())
    except (OSError, ValidationError) as e:
        raise CheckpointError(f"{path}: not a streamer checkpoint ({e})") from e
    if (ck.instance_index, ck.instance_count) != (index, count):
        raise CheckpointError(
            f"{path} belongs to instance {ck.instance_index} of {ck.instance_count}, "
            f"not {index} of {count}: the split differs, so its positions do not apply "
            "(delete it to start over)"
        )
    return ck


def save(path: Path, ck: Checkpoint) -> None:
    """Atomic: a crash leaves the old checkpoint or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as f:
        f.write(ck.model_dump_json().encode())
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
