"""Where kopf keeps its bookkeeping of each resource: in `status.kopf`, next to Ferry's status.

kopf records the spec it handled last (its diff-base, to tell a spec change from a status
one) and each handler's progress. In annotations, that was a PATCH of the object itself
after every handled change, on top of the status PATCH the same pass made: two writes, two
watch events to every watcher. In status both go out in the status PATCH the pass makes
anyway: a new Queue costs one write fewer (1,000 Queues created at once: 1,000 PATCHes,
each an etcd write and a watch event to the operator, the controller-manager's garbage
collector and every other watcher). `status.kopf` is in each CRD's schema
(`x-kubernetes-preserve-unknown-fields`: the API server would prune it otherwise).

Objects handled by an older operator keep the same records in annotations
(`ferry.dev/last-handled-configuration`, `ferry.dev/<handler>`): they are still read,
never written, and the diff-base annotation is removed once its record is in status.
"""

from __future__ import annotations

from typing import Any

import kopf

from ferry.operator.identity import GROUP

FIELD = "kopf"  # status.kopf
DIFFBASE_KEY = "last-handled-configuration"


class _LegacyDiffBase(kopf.AnnotationsDiffBaseStorage):
    """The annotation an older operator wrote: read; once the record is written to status,
    removed (a resource stays the same to `kubectl get -o yaml` readers, without a stale
    copy of its spec)."""

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: Any) -> None:
        for full_key in self.make_keys(self.key, body=body):
            if full_key in body.metadata.annotations:
                patch.metadata.annotations[full_key] = None


class _LegacyProgress(kopf.AnnotationsProgressStorage):
    """Progress annotations of an older operator: read (a handler retrying across the
    upgrade keeps its retry count), purged as kopf purges them, never written."""

    def store(self, **_: Any) -> None:
        pass

    def touch(self, **_: Any) -> None:
        pass


def diffbase_storage() -> kopf.DiffBaseStorage:
    return kopf.MultiDiffBaseStorage([
        kopf.StatusDiffBaseStorage(name=FIELD, field=f"status.{FIELD}.{DIFFBASE_KEY}"),
        _LegacyDiffBase(prefix=GROUP, key=DIFFBASE_KEY),
    ])


def progress_storage() -> kopf.ProgressStorage:
    return kopf.MultiProgressStorage([
        kopf.StatusProgressStorage(name=FIELD),
        _LegacyProgress(prefix=GROUP),
    ])
