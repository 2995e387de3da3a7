"""The JSON documents of `external.metrics.k8s.io/v1beta1`, as the aggregator expects them. Pure.

Shapes follow k8s.io/metrics (ExternalMetricValueList) and apimachinery (APIGroupList,
APIGroup, APIResourceList, Status), so `kubectl get --raw` and the HPA controller read them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ferry.operator.reconcile.autoscaling import METRIC_NAME

GROUP = "external.metrics.k8s.io"
VERSION = "v1beta1"
GROUP_VERSION = f"{GROUP}/{VERSION}"
METRICS = (METRIC_NAME,)


class _Document(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True)

    def dump(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class ExternalMetricValue(_Document):
    metric_name: str = Field(alias="metricName")
    metric_labels: dict[str, str] = Field(alias="metricLabels")
    timestamp: datetime
    value: str = Field(description="a resource.Quantity: plain integers for lag")


class ExternalMetricValueList(_Document):
    kind: str = "ExternalMetricValueList"
    api_version: str = Field(GROUP_VERSION, alias="apiVersion")
    metadata: dict[str, str] = Field(default_factory=dict)
    items: list[ExternalMetricValue]


def metric_value_list(name: str, samples: list[tuple[dict[str, str], int]],
                      timestamp: datetime) -> dict[str, Any]:
    items = [ExternalMetricValue(metric_name=name, metric_labels=labels, timestamp=timestamp,
                                 value=str(value)) for labels, value in samples]
    return ExternalMetricValueList(items=items).dump()


def _group_version() -> dict[str, str]:
    return {"groupVersion": GROUP_VERSION, "version": VERSION}


def api_group() -> dict[str, Any]:
    return {"kind": "APIGroup", "apiVersion": "v1", "name": GROUP,
            "versions": [_group_version()], "preferredVersion": _group_version()}


def api_group_list() -> dict[str, Any]:
    group = api_group()
    del group["kind"], group["apiVersion"]
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [group]}


def api_resource_list() -> dict[str, Any]:
    return {
        "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": GROUP_VERSION,
        "resources": [{"name": name, "singularName": "", "namespaced": True,
                       "kind": "ExternalMetricValueList", "verbs": ["get"]} for name in METRICS],
    }


def status(code: int, reason: str, message: str) -> dict[str, Any]:
    """A metav1.Status failure: what kubectl and client-go print for an error."""
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}
