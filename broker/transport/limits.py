"""Request limits shared by the HTTP and WebSocket endpoints (and the OpenAPI document)."""

import re

from ferry.broker.models import CURSOR_PATTERN

MAX_REQUEST_BYTES = 64 * 1024 * 1024  # above the largest batch of the largest messages allowed
CURSOR = re.compile(CURSOR_PATTERN)  # a page cursor (models.PAGE_MAX bounds a page's limit)
