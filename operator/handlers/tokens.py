"""The bearer token of a Queue's broker, read from its Secret (made first for a managed one).

Tokens are kept in memory once read: a Secret costs one GET per operator lifetime, not one
per pass. A broker that refuses a token drops it (`forget`), so the next pass reads the
Secret again.
"""

from __future__ import annotations

import secrets

from ferry.operator.clients.errors import KubeError
from ferry.operator.clients.kube import secret_value
from ferry.operator.handlers.common import Runtime
from ferry.operator.reconcile import queues, tenancy
from ferry.operator.reconcile.observations import Failure, Problem
from ferry.operator.reconcile.specs import Owner, QueueSpec


class TokenMissingError(Exception):
    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.message)
        self.failure = failure


async def broker_token(rt: Runtime, namespace: str, queue: str, spec: QueueSpec,
                       owner: Owner | None = None, *, fresh: bool = False) -> str:
    """The token for `queue`'s broker. With `owner` (the Queue's own pass) a managed broker's
    missing Secret is created with a fresh random token; otherwise a missing one is an error
    (TokenMissingError) until the Queue's pass makes it. `fresh`: the Queue was never
    reconciled, so its Secret is created without reading first (one request, not two, per
    new Queue; one that exists already answers 409 and is read)."""
    ref = tenancy.token_ref(queue, spec)
    making = owner is not None and queues.manages_broker(spec)
    # A new Queue under an old one's name must get its own Secret: the old token, still
    # in memory, went with the old Secret (garbage-collected with its Queue).
    cached = None if fresh and making else rt.tokens.get((namespace, ref.name, ref.key))
    if cached is not None:
        return cached
    try:
        secret = None if fresh and making else await rt.kube.get("v1", "Secret", namespace,
                                                                   ref.name)
        if secret is None and owner is not None and making:
            made = queues.token_secret(owner, secrets.token_urlsafe(32))
            if await rt.kube.create(made) is None:  # made meanwhile by another pass
                secret = await rt.kube.get("v1", "Secret", namespace, ref.name)
            else:
                token = made["stringData"][tenancy.TOKEN_KEY]
                rt.tokens[(namespace, ref.name, ref.key)] = token
                return str(token)
    except KubeError as e:
        raise TokenMissingError(Failure(problem=Problem.NO_TOKEN,
                                        message=f"cannot read Secret {ref.name}: {e}")) from e
    token = secret_value(secret, ref.key)
    if token is None:
        raise TokenMissingError(Failure(
            problem=Problem.NO_TOKEN,
            message=f"Secret {ref.name} does not exist or has no key {ref.key!r}"))
    rt.tokens[(namespace, ref.name, ref.key)] = token
    return token


def forget(rt: Runtime, namespace: str, queue: str, spec: QueueSpec) -> None:
    ref = tenancy.token_ref(queue, spec)
    rt.tokens.pop((namespace, ref.name, ref.key), None)
