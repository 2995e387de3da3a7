"""The OpenAPI 3.1 document, generated from the wire models (never written by hand)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from ferry.telemetry.api.models import ErrorBody, GpuList, Health, TelemetryPage, TelemetryParams

REF = "#/components/schemas/{model}"


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": REF.format(model=model.__name__)}


def _json(model: type[BaseModel], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(model)}}}


def _query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    schema = model.model_json_schema()
    params = []
    for name, prop in schema["properties"].items():
        description = prop.pop("description", "")
        prop.pop("title", None)
        params.append(
            {
                "name": name,
                "in": "query",
                "required": False,
                "description": description,
                "schema": prop,
            }
        )
    return params


def document(version: str) -> dict[str, Any]:
    _, defs = models_json_schema(
        [(m, "serialization") for m in (GpuList, TelemetryPage, ErrorBody, Health)],
        ref_template=REF,
    )
    bad = _json(ErrorBody, "invalid query parameters")
    unavailable = _json(ErrorBody, "storage unavailable")
    uuid = {"name": "uuid", "in": "path", "required": True, "schema": {"type": "string"}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "Ferry GPU telemetry API", "version": version},
        "paths": {
            "/api/v1/gpus": {
                "get": {
                    "operationId": "listGpus",
                    "summary": "Every GPU with stored telemetry",
                    "responses": {"200": _json(GpuList, "GPUs"), "503": unavailable},
                }
            },
            "/api/v1/gpus/{uuid}/telemetry": {
                "get": {
                    "operationId": "gpuTelemetry",
                    "summary": "A GPU's samples, ordered by time, one page at a time",
                    "parameters": [uuid, *_query_parameters(TelemetryParams)],
                    "responses": {
                        "200": _json(TelemetryPage, "one page of samples"),
                        "400": bad,
                        "404": _json(ErrorBody, "no telemetry for this GPU"),
                        "503": unavailable,
                    },
                }
            },
            "/healthz": {
                "get": {
                    "operationId": "health",
                    "responses": {
                        "200": _json(Health, "healthy"),
                        "503": _json(Health, "unhealthy"),
                    },
                }
            },
            "/metrics": {
                "get": {
                    "operationId": "metrics",
                    "responses": {
                        "200": {
                            "description": "Prometheus text format",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        }
                    },
                }
            },
        },
        "components": {"schemas": defs["$defs"]},
    }
