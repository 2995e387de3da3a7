"""Request limits shared by the HTTP and WebSocket endpoints (and the OpenAPI document)."""

import re

from ferry.broker.models import CURSOR_PATTERN, PAGE_MAX

MAX_REQUEST_BYTES = 64 * 1024 * 1024  # above the largest batch of the largest messages allowed
DEAD_PAGE_MAX = PAGE_MAX  # dead letters in one page (GET .../dead?limit=), as messages
CURSOR = re.compile(CURSOR_PATTERN)

__all__ = ["CURSOR", "CURSOR_PATTERN", "DEAD_PAGE_MAX", "MAX_REQUEST_BYTES"]
