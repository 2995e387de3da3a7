"""Pieces every Ferry pod spec shares: security contexts, probes, resources, and the user's
`podTemplate` laid over what Ferry builds (no side effects)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from ferry.operator.reconcile.metadata import Manifest
from ferry.operator.reconcile.specs import (
    LocalRef,
    PodMetadata,
    PodOverrides,
    PodSecurity,
    PodTemplate,
    Resources,
)


class PodDefaults(BaseModel):
    """What the operator decides for every pod unless a resource overrides it: its own
    image (so upgrading the operator upgrades what it runs) and registry pull secrets."""

    model_config = ConfigDict(frozen=True)

    image: str
    pull_secrets: tuple[str, ...] = ()


# Shared, not built per call: a pydantic model deep-copies its mutable defaults when built,
# which showed in profiles of 300 Queues reconciled at once. Frozen, so sharing is safe.
NO_TEMPLATE = PodTemplate()


def pod_security(template: PodTemplate | None = None) -> Manifest:
    """Restricted (Pod Security Standards, OpenShift's restricted-v2): non-root, default
    seccomp, and no fixed UID/GID/fsGroup unless the podTemplate asks for them, so a
    platform that assigns IDs per namespace can."""
    out: Manifest = {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
    if template is not None and template.spec.security_context is not None:
        out.update(template.spec.security_context.model_dump(by_alias=True, exclude_none=True,
                                                             exclude_defaults=True))
    return out


def container_security() -> Manifest:
    return {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]}}


def http_probe(path: str, period: int) -> Manifest:
    return {"httpGet": {"path": path, "port": "http"}, "periodSeconds": period,
            "failureThreshold": 3, "timeoutSeconds": 2}


def resources(spec: Resources) -> Manifest:
    return {k: dict(v) for k, v in spec.model_dump().items() if v}


def pod(labels: dict[str, str], annotations: dict[str, str], spec: Manifest,
        template: PodTemplate | None, defaults: PodDefaults) -> Manifest:
    """A pod template: Ferry's `spec` with the user's `template` laid over it.

    Field by field, as documented in the CRD: labels and annotations are merged (Ferry's
    own keys win: selectors and the config hash depend on them); nodeSelector is merged;
    tolerations, affinity, topologySpreadConstraints, priorityClassName and
    serviceAccountName are the user's; imagePullSecrets are the operator's defaults plus
    the user's, each name once; securityContext gains only the IDs the user asks for.
    """
    template = template or NO_TEMPLATE
    user = template.spec
    out: Manifest = dict(spec)
    out["securityContext"] = pod_security(template)
    if user.node_selector:
        out["nodeSelector"] = {**out.get("nodeSelector", {}), **user.node_selector}
    for key, value in (("tolerations", user.tolerations), ("affinity", user.affinity),
                       ("topologySpreadConstraints", user.topology_spread_constraints),
                       ("priorityClassName", user.priority_class_name),
                       ("serviceAccountName", user.service_account_name)):
        if value:
            out[key] = value
    asked = [s.name for s in user.image_pull_secrets]
    names = list(dict.fromkeys([*defaults.pull_secrets, *asked]))
    if names:
        out["imagePullSecrets"] = [{"name": n} for n in names]
    metadata: Manifest = {"labels": {**template.metadata.labels, **labels}}
    merged = {**template.metadata.annotations, **annotations}
    if merged:
        metadata["annotations"] = merged
    return {"metadata": metadata, "spec": out}


def overlay(shared: PodTemplate | None, own: PodTemplate | None) -> PodTemplate | None:
    """A workload's own podTemplate laid over its resource's shared one, by the rules `pod`
    lays a template over Ferry's spec: labels, annotations and nodeSelector merged (the
    workload's keys win); tolerations, affinity, topologySpreadConstraints,
    priorityClassName and serviceAccountName the workload's when it sets them, else the
    shared ones; imagePullSecrets both, each name once; securityContext IDs field by field.
    """
    if shared is None or own is None:
        return own or shared
    base, mine = shared.spec, own.spec
    security = None
    if base.security_context is not None or mine.security_context is not None:
        security = PodSecurity(**{
            **(base.security_context or PodSecurity()).model_dump(exclude_defaults=True),
            **(mine.security_context or PodSecurity()).model_dump(exclude_defaults=True)})
    names = dict.fromkeys(s.name for s in (*base.image_pull_secrets, *mine.image_pull_secrets))
    return PodTemplate(
        metadata=PodMetadata(labels={**shared.metadata.labels, **own.metadata.labels},
                             annotations={**shared.metadata.annotations,
                                          **own.metadata.annotations}),
        spec=PodOverrides(
            node_selector={**base.node_selector, **mine.node_selector},
            tolerations=mine.tolerations or base.tolerations,
            affinity=mine.affinity or base.affinity,
            topology_spread_constraints=(mine.topology_spread_constraints
                                         or base.topology_spread_constraints),
            priority_class_name=mine.priority_class_name or base.priority_class_name,
            service_account_name=mine.service_account_name or base.service_account_name,
            image_pull_secrets=[LocalRef(name=n) for n in names],
            security_context=security))
