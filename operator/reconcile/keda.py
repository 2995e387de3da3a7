"""The KEDA provider: a ScaledObject a ConsumerGroup owns, decided without side effects.

KEDA's `metrics-api` scaler reads the group's stats from its broker
(`GET /v1/queues/{queue}/groups/{group}`) and takes `backlog`, the same figure
`autoscaling.metric_value` serves to an HPA (ready plus in flight), so both providers
scale on one number. KEDA then does what Ferry's own path does with an HPA and the
operator's 0 <-> 1 step: it activates the target from zero when the backlog is above 0
and returns it to zero after `cooldownPeriod` (= idleAfter) without backlog.
"""

from __future__ import annotations

import math
from urllib.parse import quote

from ferry.operator.identity import KEDA_API_VERSION
from ferry.operator.reconcile import autoscaling, durations
from ferry.operator.reconcile.metadata import Manifest, child_metadata
from ferry.operator.reconcile.specs import Autoscaling, KeyRef, Owner

API_VERSION = KEDA_API_VERSION
KIND = "ScaledObject"
AUTH_KIND = "TriggerAuthentication"
# The field of the broker's GroupStats that KEDA reads (GJSON path into the JSON body).
VALUE_LOCATION = "backlog"


def hpa_name(owner: Owner) -> str:
    """KEDA names the HPA it creates for a ScaledObject `keda-hpa-<name>`."""
    return f"keda-hpa-{owner.name}"


def stats_url(endpoint: str, queue: str, group: str) -> str:
    return f"{endpoint.rstrip('/')}/v1/queues/{quote(queue)}/groups/{quote(group)}"


def _seconds(duration: str) -> int:
    # KEDA and the HPA count whole seconds.
    return math.ceil(durations.to_ms(duration) / 1000)


def build_trigger_auth(owner: Owner, token: KeyRef) -> Manifest:
    """How KEDA authenticates to the broker: the bearer token from the Secret Ferry (or the
    connection Secret) holds, so KEDA's calls pass a token-protected broker."""
    return {
        "apiVersion": API_VERSION,
        "kind": AUTH_KIND,
        "metadata": child_metadata(owner, owner.name, "autoscaler"),
        "spec": {"secretTargetRef": [{"parameter": "token", "name": token.name,
                                      "key": token.key}]},
    }


def build_scaled_object(owner: Owner, queue: str, endpoint: str, spec: Autoscaling,
                        token: KeyRef | None = None) -> Manifest:
    """The ScaledObject of ConsumerGroup `owner` on `queue`, whose broker is `endpoint`.

    AverageValue makes KEDA's HPA aim for ceil(backlog / lagPerReplica) replicas, as
    Ferry's own HPA does; activation above 0 wakes the target on the first message.
    """
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": child_metadata(owner, owner.name, "autoscaler"),
        "spec": {
            "scaleTargetRef": autoscaling.target_ref(spec),
            "minReplicaCount": spec.min_replicas,
            "maxReplicaCount": spec.max_replicas,
            "pollingInterval": _seconds(spec.polling_interval),
            "cooldownPeriod": _seconds(spec.idle_after),
            "advanced": {
                "horizontalPodAutoscalerConfig": {
                    "name": hpa_name(owner),
                    "behavior": {
                        "scaleUp": {"stabilizationWindowSeconds":
                                    _seconds(spec.scale_up_stabilization)},
                        "scaleDown": {"stabilizationWindowSeconds":
                                      _seconds(spec.scale_down_stabilization)},
                    },
                },
            },
            "triggers": [{
                "type": "metrics-api",
                "name": "backlog",
                "metricType": "AverageValue",
                "metadata": {
                    "url": stats_url(endpoint, queue, owner.name),
                    "format": "json",
                    "valueLocation": VALUE_LOCATION,
                    "targetValue": str(spec.lag_per_replica),
                    "activationTargetValue": "0",
                    **({"authMode": "bearer"} if token is not None else {}),
                },
                **({"authenticationRef": {"name": owner.name}} if token is not None else {}),
            }],
        },
    }
