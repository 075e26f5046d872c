"""Which server answers, as the request cache and the batch journal name it.

Its own module, importing nothing else of the project's but the settings, so the client, its
rate limits, the cache-through calls and the Batch API mode can all name an endpoint without
importing each other.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from flows.config.endpoint import EndpointConfig

__all__ = ["EMBEDDED_MODEL", "endpoint_identity"]

DEFAULT_PORTS = {"http": 80, "https": 443}
EMBEDDED_MODEL = "embedded-local-model"
"""The endpoint named in the keys of the embedded local model, whose port changes every run."""


def endpoint_identity(endpoint: EndpointConfig) -> str:
    """Which server answers, as the cache key names it: ``scheme://host:port/path``.

    Two servers behind the same model name answer differently, so the endpoint is part of
    every key. Normalized so that spellings of one URL are one endpoint: scheme and host in
    lower case, the default port written out, no trailing slash. Never the API key, and never
    what a URL may carry beside the address (``user:password@``, a query such as
    ``?api-key=...``, a fragment). The embedded local model (marked ``embedded`` by
    ``flows.local.endpoint``, never guessed from a loopback address: a user's own local server
    is its own endpoint) listens on a new free port each run; its served name is the model
    file's, so it is keyed as one endpoint.
    """
    url = urlsplit((endpoint.base_url or "").strip())
    scheme = url.scheme.lower()
    host = (url.hostname or "").lower()
    if endpoint.embedded:  # set only where refine serves it, never guessed from the address
        return EMBEDDED_MODEL
    try:
        port: int | str | None = url.port or DEFAULT_PORTS.get(scheme)
    except ValueError:  # a port that is not a number: keep the text, still without userinfo
        port = url.netloc.rpartition(":")[2]
    shown_host = f"[{host}]" if ":" in host else host
    address = f"{shown_host}:{port}" if port else shown_host
    return f"{scheme}://{address}{url.path.rstrip('/')}"
