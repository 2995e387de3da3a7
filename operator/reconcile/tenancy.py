"""Who may use which broker, and the token each broker's clients send (no side effects).

A managed broker (no broker.url) requires a token from the Secret Ferry makes for it; an
external broker's token comes from the connection Secret the Queue names. External brokers
are a tenancy decision: only namespaces the operator's configuration lists may name one,
so a tenant cannot point a Queue at another namespace's broker or make the operator call
arbitrary addresses.
"""

from __future__ import annotations

from collections.abc import Set

from ferry.operator.reconcile.observations import Failure, Problem
from ferry.operator.reconcile.specs import KeyRef, QueueSpec

TOKEN_KEY = "token"
ANY_NAMESPACE = "*"


def token_secret_name(queue: str) -> str:
    """The Secret Ferry makes for the broker of a managed Queue."""
    return f"{queue}-broker-token"


def token_ref(queue: str, spec: QueueSpec) -> KeyRef:
    """The Secret key holding the token that clients of `queue`'s broker send."""
    secret = spec.broker.connection_secret
    if spec.broker.url is not None and secret is not None:
        return KeyRef(name=secret.name, key=secret.key)
    return KeyRef(name=token_secret_name(queue), key=TOKEN_KEY)


def refusal(namespace: str, spec: QueueSpec, allowed: Set[str]) -> Failure | None:
    """Why the operator will not talk to this Queue's broker, or None when it may."""
    if spec.broker.url is None or ANY_NAMESPACE in allowed or namespace in allowed:
        return None
    return Failure(problem=Problem.NOT_ALLOWED,
                   message=f"namespace {namespace} may not use an external broker (the "
                           "operator's --external-broker-namespaces does not list it)")
