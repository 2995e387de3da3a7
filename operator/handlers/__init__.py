"""kopf handlers: read the object, call a reconciler, act through the clients, set status.

One module per kind; `register` wires them into a registry with the operator's intervals.
"""

from __future__ import annotations

from typing import Any

import kopf

from ferry.operator.clients.kube import bearer, load_credentials
from ferry.operator.handlers import consumergroups, pipelines, queues, watching
from ferry.operator.settings import OperatorSettings


def register(registry: kopf.OperatorRegistry, settings: OperatorSettings) -> None:
    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        """The same credentials as the operator's own client (kubeconfig or service account)."""
        cfg = load_credentials(settings.kubeconfig)
        token = bearer(cfg) or ""
        return kopf.ConnectionInfo(
            server=cfg.host, ca_path=cfg.ssl_ca_cert, insecure=not cfg.verify_ssl,
            certificate_path=cfg.cert_file, private_key_path=cfg.key_file,
            scheme="Bearer" if token.startswith("Bearer ") else None,
            token=token.removeprefix("Bearer ") or None)

    for kind in (queues, consumergroups, pipelines):
        kind.register(registry, settings)
    watching.register(registry, {"Queue": queues.plan, "ConsumerGroup": consumergroups.plan,
                                 "TelemetryPipeline": pipelines.plan})
