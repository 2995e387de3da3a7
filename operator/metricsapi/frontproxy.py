"""Who is asking: the aggregator's front-proxy client certificate and its request headers.

kube-apiserver authenticates and authorizes the user, then proxies to us with a client
certificate signed by its requestheader CA and the user in X-Remote-* headers. We accept
those headers only over a connection whose certificate that CA signed and whose CN is in
`requestheader-allowed-names` (empty: any CN), exactly like a Kubernetes aggregated server.
The settings come from kube-system/extension-apiserver-authentication (the API server
publishes them there) or from flags.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Mapping
from typing import Any

from multidict import CIMultiDictProxy
from pydantic import BaseModel, ConfigDict, Field

CONFIGMAP_NAMESPACE = "kube-system"
CONFIGMAP_NAME = "extension-apiserver-authentication"


class UnauthenticatedError(Exception):
    """The caller is not the front proxy, or it named no user; the message says which."""


class RequestHeaderConfig(BaseModel):
    model_config = ConfigDict(frozen=True)

    client_ca: str = Field(description="PEM bundle of the requestheader client CA")
    allowed_names: tuple[str, ...] = ()
    username_headers: tuple[str, ...] = ("X-Remote-User",)
    uid_headers: tuple[str, ...] = ("X-Remote-Uid",)
    group_headers: tuple[str, ...] = ("X-Remote-Group",)
    extra_header_prefixes: tuple[str, ...] = ("X-Remote-Extra-",)

    @classmethod
    def from_configmap(cls, data: Mapping[str, str]) -> RequestHeaderConfig:
        """The ConfigMap's keys hold JSON lists, e.g. requestheader-allowed-names: '["a"]'."""
        if not data.get("requestheader-client-ca-file"):
            raise ValueError(f"{CONFIGMAP_NAMESPACE}/{CONFIGMAP_NAME} has no "
                             "requestheader-client-ca-file: is the aggregation layer enabled "
                             "(kube-apiserver --requestheader-client-ca-file)?")

        def listed(key: str) -> tuple[str, ...] | None:
            raw = data.get(key)
            return tuple(json.loads(raw)) if raw else None

        fields: dict[str, Any] = {"client_ca": data["requestheader-client-ca-file"]}
        for key, field in (("requestheader-allowed-names", "allowed_names"),
                           ("requestheader-username-headers", "username_headers"),
                           ("requestheader-uid-headers", "uid_headers"),
                           ("requestheader-group-headers", "group_headers"),
                           ("requestheader-extra-headers-prefix", "extra_header_prefixes")):
            if (value := listed(key)) is not None:
                fields[field] = value
        return cls(**fields)


class User(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: tuple[tuple[str, tuple[str, ...]], ...] = ()


def server_context(cert_file: str, key_file: str, config: RequestHeaderConfig) -> ssl.SSLContext:
    """TLS for the server: a client certificate is optional (health checks come without one),
    but one that the requestheader CA did not sign fails the handshake."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_file, key_file)
    context.verify_mode = ssl.CERT_OPTIONAL
    context.load_verify_locations(cadata=config.client_ca)
    return context


def _common_name(peercert: Mapping[str, Any]) -> str | None:
    for rdn in peercert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return None


def _first(headers: CIMultiDictProxy[str], names: tuple[str, ...]) -> str:
    for name in names:
        if value := headers.get(name, ""):
            return value
    return ""


def authenticate(peercert: Mapping[str, Any] | None, headers: CIMultiDictProxy[str],
                 config: RequestHeaderConfig) -> User:
    """The user the aggregator vouches for; UnauthenticatedError says why not."""
    if not peercert:
        raise UnauthenticatedError("no client certificate: only the API server's front proxy "
                              "may call this API (through the aggregation layer)")
    name = _common_name(peercert)
    if config.allowed_names and name not in config.allowed_names:
        raise UnauthenticatedError(f"client certificate CN {name!r} is not one of the allowed "
                              f"front-proxy names {list(config.allowed_names)}")
    user = _first(headers, config.username_headers)
    if not user:
        headers_tried = ", ".join(config.username_headers)
        raise UnauthenticatedError(f"front proxy sent no user ({headers_tried})")
    groups = tuple(g for h in config.group_headers for g in headers.getall(h, []))
    extra: dict[str, list[str]] = {}
    for key, value in headers.items():
        for prefix in config.extra_header_prefixes:
            if key.lower().startswith(prefix.lower()):
                extra.setdefault(key[len(prefix):].lower(), []).append(value)
    return User(name=user, uid=_first(headers, config.uid_headers), groups=groups,
                extra=tuple((k, tuple(v)) for k, v in sorted(extra.items())))
