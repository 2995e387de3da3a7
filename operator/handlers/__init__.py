"""kopf handlers: read the object, call a reconciler, act through the clients, set status.

One module per kind; `register` wires them into a registry with the operator's intervals.
"""

from __future__ import annotations

import kopf

from ferry.operator.handlers import consumergroups, pipelines, queues
from ferry.operator.settings import OperatorSettings


def register(registry: kopf.OperatorRegistry, settings: OperatorSettings) -> None:
    registry_login = kopf.on.login(registry=registry)
    registry_login(kopf.login_via_client)
    for kind in (queues, consumergroups, pipelines):
        kind.register(registry, settings)
