"""Live copies of the objects the operator watches, as kopf's watch streams last delivered them.

Reconcilers read owners and children from here instead of GETting them: an idle resource
costs the API server nothing, and a change to a child reaches the operator as a watch
event (handlers/watching.py) instead of being found by polling.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

Obj = dict[str, Any]
Key = tuple[str, str, str, str]  # apiVersion, kind, namespace, name


def key_of(obj: Mapping[str, Any]) -> Key:
    meta = obj["metadata"]
    return obj["apiVersion"], obj["kind"], meta.get("namespace", ""), meta["name"]


class Watched:
    """Objects by key, and children by the uid of their controlling owner."""

    def __init__(self) -> None:
        self._objects: dict[Key, Obj] = {}

    def observe(self, event_type: str | None, obj: Mapping[str, Any]) -> None:
        """Record a watch event (or an API answer); DELETED forgets the object."""
        key = key_of(obj)
        if event_type == "DELETED":
            self._objects.pop(key, None)
        else:
            self._objects[key] = copy.deepcopy(dict(obj))

    def get(self, api_version: str, kind: str, namespace: str, name: str) -> Obj | None:
        return self._objects.get((api_version, kind, namespace, name))

    def matching(self, api_version: str, kind: str, namespace: str,
                 labels: Mapping[str, str]) -> list[Obj]:
        """Objects of a kind in a namespace whose labels include `labels` (a selector)."""
        return [o for (v, k, ns, _), o in self._objects.items()
                if (v, k, ns) == (api_version, kind, namespace)
                and labels.items() <= ((o["metadata"].get("labels") or {}).items())]

    def owned_by(self, uid: str) -> list[Obj]:
        return [o for o in self._objects.values() if controller_uid(o) == uid]

    def __len__(self) -> int:
        return len(self._objects)


def controller_uid(obj: Mapping[str, Any]) -> str | None:
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return str(ref.get("uid"))
    return None
