"""A stand-in kubelet: turn a workload's pod template into a local process.

The demo's control plane has no kubelet, so the demo runs the pods the operator
asked for itself, from the pod template as the API server stores it: the
container's command and args, `$(VAR)` expanded from its env (downward-API pod
index and name included), volume mount paths mapped to folders of the demo's
work directory, in-cluster Service URLs mapped to the local processes that
serve them (what kube-proxy would do) and container ports to free local ports.
Pure: building the argv has no side effects; the supervisor runs it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

POD_INDEX = "metadata.labels['apps.kubernetes.io/pod-index']"
_VAR = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


class UnsupportedPodError(ValueError):
    """The template asks for something this stand-in cannot give a local process."""


class MissingReferenceError(UnsupportedPodError):
    """A Secret or ConfigMap (or one of its keys) the pod uses does not exist yet: a kubelet
    keeps such a pod waiting and tries again."""


@dataclass(frozen=True)
class LocalPod:
    name: str
    argv: list[str]
    env: dict[str, str]


@dataclass(frozen=True)
class Node:
    """What this machine offers the pods: folders, local service addresses, ports."""

    volumes: Path                      # per pod and volume: <volumes>/<pod>/<volume>
    image_files: Mapping[str, Path]    # paths baked into the image -> files here
    services: Mapping[str, str]        # in-cluster base URL -> local base URL
    ports: Mapping[int, int]           # containerPort -> local port
    config_maps: Mapping[str, Mapping[str, str]]   # name -> data, as the API server holds it
    secrets: Mapping[str, Mapping[str, str]]       # name -> decoded data (env and volumes)


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes' $(VAR) expansion: defined variables are replaced, $$ is a literal $."""
    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(1), m.group(0))
    return _VAR.sub(sub, text)


def _key_ref(name: str, ref: Mapping[str, Any], store: Mapping[str, Mapping[str, str]],
             what: str) -> str:
    data = store.get(ref["name"])
    if data is None or ref["key"] not in data:
        raise MissingReferenceError(f"env {name}: {what} {ref['name']} has no key {ref['key']!r}")
    return data[ref["key"]]


def _fields(pod: str, namespace: str, index: int, labels: Mapping[str, str]) -> dict[str, str]:
    out = {f"metadata.labels['{k}']": v for k, v in labels.items()}
    out.update({POD_INDEX: str(index), "metadata.name": pod, "metadata.namespace": namespace})
    return out


def _env(container: Mapping[str, Any], fields: Mapping[str, str], node: Node) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in container.get("env") or []:
        name, source = item["name"], item.get("valueFrom") or {}
        if "value" in item or not source:  # the API server drops an empty value
            out[name] = expand(str(item.get("value", "")), out)
        elif "secretKeyRef" in source:
            out[name] = _key_ref(name, source["secretKeyRef"], node.secrets, "Secret")
        elif "configMapKeyRef" in source:
            out[name] = _key_ref(name, source["configMapKeyRef"], node.config_maps, "ConfigMap")
        elif source.get("fieldRef", {}).get("fieldPath") in fields:
            out[name] = fields[source["fieldRef"]["fieldPath"]]
        else:
            raise UnsupportedPodError(f"env {name}: {source} cannot be resolved outside a cluster")
    return out


def claim_folder(volumes: Path, claim: str) -> Path:
    """A claim outlives its pods: one folder per PersistentVolumeClaim, reused by every pod
    that mounts it (a StatefulSet's pod coming back finds its volume's files)."""
    return volumes / "claims" / claim


def _mounts(spec: Mapping[str, Any], container: Mapping[str, Any], pod: str,
            node: Node) -> dict[str, Path]:
    """mountPath -> local folder, creating emptyDirs and writing configMap files."""
    volumes = {v["name"]: v for v in spec.get("volumes") or []}
    out: dict[str, Path] = {}
    for mount in container.get("volumeMounts") or []:
        volume = volumes[mount["name"]]
        folder = node.volumes / pod / mount["name"]
        if "persistentVolumeClaim" in volume:
            folder = claim_folder(node.volumes, volume["persistentVolumeClaim"]["claimName"])
        elif "configMap" in volume or "secret" in volume:
            source = volume.get("configMap") or volume["secret"]
            store = node.config_maps if "configMap" in volume else node.secrets
            name = source.get("name") or source.get("secretName") or ""
            if name not in store and not source.get("optional"):  # as a kubelet: wait for it
                raise MissingReferenceError(f"volume {mount['name']}: no {source} yet")
            data = store.get(name, {})
            items = source.get("items") or [{"key": k, "path": k} for k in data]
            for item in items:
                if item["key"] not in data:
                    raise MissingReferenceError(f"volume {mount['name']}: no key "
                                                f"{item['key']!r} in {source}")
                (folder / item["path"]).parent.mkdir(parents=True, exist_ok=True)
                (folder / item["path"]).write_text(data[item["key"]])
        elif "emptyDir" not in volume and "projected" not in volume:
            # projected: the service-account token; the local processes do not use it.
            raise UnsupportedPodError(f"volume {mount['name']}: only emptyDir, configMap, "
                                      "secret, projected and persistentVolumeClaim volumes "
                                      "run locally")
        folder.mkdir(parents=True, exist_ok=True)
        out[mount["mountPath"].rstrip("/")] = folder
    return out


def _localize(text: str, mounts: Mapping[str, Path], node: Node) -> str:
    for remote, local in node.services.items():
        text = text.replace(remote, local)
    paths = {**node.image_files, **mounts}
    for prefix, folder in sorted(paths.items(), key=lambda kv: -len(kv[0])):
        if text == prefix or text.startswith(prefix + "/"):
            return str(folder) + text[len(prefix):]
        # URLs such as sqlite:///var/lib/ferry/x.db carry the path after the scheme.
        for scheme in ("sqlite://",):
            if text.startswith(scheme + prefix + "/"):
                return scheme + str(folder) + text[len(scheme + prefix):]
    return text


def _ports(argv: list[str], node: Node) -> list[str]:
    out = list(argv)
    for i, arg in enumerate(out[:-1]):
        if arg.startswith("--") and "port" in arg and out[i + 1].isdigit():
            out[i + 1] = str(node.ports.get(int(out[i + 1]), int(out[i + 1])))
    return out


def local_pod(template: Mapping[str, Any], *, workload: str, namespace: str, index: int,
              node: Node, name: str | None = None) -> LocalPod:
    """The process for replica `index` of `workload`: a pod (or pod template) whose one
    container has a command."""
    spec = template["spec"]
    containers = spec.get("containers") or []
    pod = name or f"{workload}-{index}"
    if len(containers) != 1:
        raise UnsupportedPodError(f"{pod}: {len(containers)} containers; one runs locally")
    container = containers[0]
    if not container.get("command"):
        raise UnsupportedPodError(f"{pod}: the container has no command (the image's "
                             "entrypoint cannot run locally)")
    labels = (template.get("metadata") or {}).get("labels") or {}
    env = _env(container, _fields(pod, namespace, index, labels), node)
    mounts = _mounts(spec, container, pod, node)
    env = {k: _localize(v, mounts, node) for k, v in env.items()}
    argv = [expand(a, env) for a in [*container["command"], *container.get("args", [])]]
    argv = _ports([_localize(a, mounts, node) for a in argv], node)
    return LocalPod(name=pod, argv=argv, env=env)
