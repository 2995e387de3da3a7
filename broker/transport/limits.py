"""Request limits shared by the HTTP and WebSocket endpoints."""

MAX_REQUEST_BYTES = 64 * 1024 * 1024  # above the largest batch of the largest messages allowed
