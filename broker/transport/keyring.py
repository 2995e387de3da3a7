"""The broker's tokens (--token-file): who a bearer token is, its rate, its refusals.

A presented token is looked up in constant time: its SHA-256 is compared with every
configured token's (hmac.compare_digest, no early exit), so neither the time taken nor
a length difference tells which token, if any, matched. Tokens are kept only as
digests and named by their line in the file (rights.Grant.where), never by their text.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import time
from collections import Counter
from collections.abc import Mapping

from ferry.broker.models import ErrorCode
from ferry.broker.transport.buckets import Bucket
from ferry.broker.transport.errors import ApiError
from ferry.broker.transport.tokens import Grant, Right


class Keyring:
    """The tokens of --token-file, their buckets and the refusals counted (/metrics)."""

    def __init__(self, grants: Mapping[str, Grant]) -> None:
        self._digests = [(_digest(token), grant) for token, grant in grants.items()]
        self._buckets = {grant.where: Bucket.full(grant.rate, time.monotonic())
                         for grant in grants.values() if grant.rate is not None}
        self.refusals: Counter[ErrorCode] = Counter()

    def identify(self, token: str) -> Grant | None:
        """The grant of `token` (None: unknown), compared with every token."""
        digest = _digest(token)
        found: Grant | None = None
        for known, grant in self._digests:
            if hmac.compare_digest(digest, known):
                found = grant
        return found

    def charge(self, grant: Grant, now: float) -> ApiError | None:
        """Take one request from the token's rate (`now`: monotonic seconds); the 429."""
        bucket = self._buckets.get(grant.where)
        wait = 0.0 if bucket is None else bucket.take(now)
        if wait <= 0.0:
            return None
        self.refusals[ErrorCode.RATE_LIMITED] += 1
        return ApiError(ErrorCode.RATE_LIMITED,
                        f"the token on {grant.where} of --token-file is limited to "
                        f"{grant.rate} requests per second; retry in {wait:.3f} s",
                        retry_after=max(1, math.ceil(wait)))

    def permit(self, grant: Grant, rights: frozenset[Right],
               queue: str | None) -> ApiError | None:
        """The 403 when the token holds none of `rights` (empty: any token may) on `queue`."""
        if not rights or any(grant.allows(r, queue) for r in rights):
            return None
        self.refusals[ErrorCode.FORBIDDEN] += 1
        need = " or ".join(sorted(r.value for r in rights))
        where = "" if queue is None else f" on queue {queue}"
        why = ("" if queue is None or grant.covers(queue)
               else " (its queues= globs do not match this queue)")
        return ApiError(ErrorCode.FORBIDDEN,
                        f"the token on {grant.where} of --token-file may not do this"
                        f"{where}: it needs the right {need}{why}")

    def check(self, grant: Grant, rights: frozenset[Right], queue: str | None,
              now: float) -> ApiError | None:
        """Charge one request, then check its rights: a refused request counts too, so a
        token cannot probe without limit."""
        return self.charge(grant, now) or self.permit(grant, rights, queue)


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()
