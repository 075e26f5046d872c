"""Whether anything listens at the endpoint, found before the batch with a TCP connect.

No HTTP request is sent, so nothing is billed: a wrong port (connection refused) or a host that
does not resolve fails within a second, with the URL, instead of every item failing after its
retries. An endpoint that goes away later, mid-run, is the retry policy's business.
"""

from __future__ import annotations

import socket
import urllib.parse
import urllib.request

from refine.errors import ConfigError, FatalEndpointError

__all__ = ["probe_endpoint"]


def probe_endpoint(base_url: str, timeout: float) -> None:
    """Raise FatalEndpointError (exit code 2) if nothing accepts a TCP connection at ``base_url``.

    Skipped when a proxy from the environment carries the requests: then the proxy, not this
    machine, connects to the host.
    """
    parts = urllib.parse.urlsplit(base_url)
    host = parts.hostname
    try:
        port = parts.port
    except ValueError:
        raise ConfigError(f"base URL {base_url!r} has an invalid port") from None
    if parts.scheme not in ("http", "https") or not host:
        raise ConfigError(f"base URL {base_url!r} is not an http:// or https:// URL")
    proxies = urllib.request.getproxies()
    if parts.scheme in proxies and not urllib.request.proxy_bypass(host):
        return
    port = port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except socket.gaierror as exc:
        reason = f"host {host!r} does not resolve ({exc.strerror})"
    except TimeoutError:
        reason = f"no TCP connection to {host}:{port} within {timeout:g} s"
    except OSError as exc:
        reason = f"{exc.strerror or exc} on {host}:{port}"
    else:
        return
    raise FatalEndpointError(
        f"cannot reach {base_url}: {reason}; check --base-url (or OPENAI_BASE_URL, "
        "[endpoint] base_url) and that the server is running",
        url=base_url,
    )
