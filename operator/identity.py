"""Names both operator layers use: Ferry's API identity, KEDA's, its field manager, broker problems.

A leaf (it imports nothing of the operator), so the pure reconcilers and the I/O
clients read one definition each without importing each other (.importlinter).
"""

from __future__ import annotations

from enum import StrEnum

GROUP = "ferry.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KEDA_API_VERSION = "keda.sh/v1alpha1"  # ScaledObject, TriggerAuthentication
FIELD_MANAGER = "ferry-operator"  # server-side apply manager and managed-by label value


class Problem(StrEnum):
    """Why a call to a broker (or what it needs) failed; a clients error carries one."""

    UNREACHABLE = "unreachable"  # connection refused, timeouts: maybe temporary
    REJECTED = "rejected"  # the broker answered 4xx/5xx to a valid request
    MISSING = "missing"  # the queue or group does not exist on the broker
    NO_QUEUE = "no-queue"  # a ConsumerGroup names a Queue resource that does not exist
    UNAUTHORIZED = "unauthorized"  # the broker refused the token (401/403)
    NO_TOKEN = "no-token"  # the Secret with the broker's token is missing or lacks the key
    NOT_ALLOWED = "not-allowed"  # an external broker from a namespace the operator refuses
