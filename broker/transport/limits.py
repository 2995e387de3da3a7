"""Request limits shared by the HTTP and WebSocket endpoints (and the OpenAPI document)."""

import re

MAX_REQUEST_BYTES = 64 * 1024 * 1024  # above the largest batch of the largest messages allowed
DEAD_PAGE_MAX = 1000  # dead letters in one page (GET .../dead?limit=)
CURSOR_PATTERN = "^[0-9]{1,19}$"  # a dead-letter page cursor: the last seq of the page before
CURSOR = re.compile(CURSOR_PATTERN)
