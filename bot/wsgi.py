"""What every inbound POST shares: the body, read once and never past the limit."""

from __future__ import annotations

from typing import Any

MAX_BODY = 1024 * 1024

Response = tuple[int, dict[str, Any] | list[Any]]


class BodyRefused(Exception):  # noqa: N818 - an answer for the client, not a crash
    def __init__(self, status: int, error: str) -> None:
        super().__init__(error)
        self.response: Response = (status, {"error": error})


def read_body(environ: dict[str, Any], limit: int = MAX_BODY) -> bytes:
    """The request body; BodyRefused (400 or 413) for a bad length or one over `limit`."""
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        raise BodyRefused(400, "bad Content-Length") from None
    if length > limit:
        raise BodyRefused(413, f"body over {limit} bytes")
    return environ["wsgi.input"].read(length) if length else b""
