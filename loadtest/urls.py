"""The one check of a service URL every load-testing program applies: plain `http://` with a host.

The load client (client/wire.py) writes HTTP/1.1 straight onto a TCP socket, without TLS, so an
`https://` URL would fail on the first request instead of at the flag; refusing it here, for the
settings objects and the wire alike, gives one rule and one message.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field


def http_url(url: str) -> str:
    """`url` without a trailing slash, or ValueError saying why the load client cannot use it."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"{url!r} is not an http://host[:port] URL (the load client speaks plain http only)")
    try:
        parts.port  # noqa: B018  (urlsplit checks the port only when asked)
    except ValueError:
        raise ValueError(f"{url!r} is not an http://host[:port] URL (bad port)") from None
    return url.rstrip("/")


# a settings field (a flag) holding a service URL: checked and normalised by http_url
ServiceUrl = Annotated[str, AfterValidator(http_url), Field(description="running service")]
