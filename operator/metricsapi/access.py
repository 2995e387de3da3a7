"""Delegated authorization: the API server decides (SubjectAccessReview), we remember a while.

kube-apiserver already authorized the request before proxying it; asking again is what
every aggregated server does, so a mis-set RBAC rule or a direct caller is still refused.
Answers are kept for `ttl` seconds so each HPA sync does not cost a review.
"""

from __future__ import annotations

import time
from typing import Protocol

from ferry.operator.clients.kubereads import AccessReviewer, KubernetesReadError
from ferry.operator.metricsapi.documents import GROUP
from ferry.operator.metricsapi.frontproxy import User


class ReviewUnavailableError(Exception):
    """The API server could not be asked; the request is refused with 503, not allowed."""


class Authorizer(Protocol):
    async def may_read(self, user: User, metric: str, namespace: str) -> bool: ...


class AllowAuthenticated:
    """For running without Kubernetes (--group): the front proxy's word is enough."""

    async def may_read(self, user: User, metric: str, namespace: str) -> bool:
        return True


class DelegatedAuthorizer:
    def __init__(self, reviewer: AccessReviewer, *, ttl: float = 10.0) -> None:
        self._reviewer = reviewer
        self._ttl = ttl
        self._answers: dict[tuple[User, str, str], tuple[bool, float]] = {}

    async def may_read(self, user: User, metric: str, namespace: str) -> bool:
        key = (user, metric, namespace)
        known = self._answers.get(key)
        if known is not None and time.monotonic() - known[1] < self._ttl:
            return known[0]
        # GET on .../namespaces/NS/METRIC is a `list` of METRIC to the API server's authorizer.
        try:
            answer = await self._reviewer.allowed(
                user=user.name, groups=user.groups, extra=dict(user.extra), uid=user.uid,
                verb="list", group=GROUP, resource=metric, namespace=namespace)
        except KubernetesReadError as error:
            raise ReviewUnavailableError(str(error)) from error
        self._answers[key] = (answer, time.monotonic())
        return answer
