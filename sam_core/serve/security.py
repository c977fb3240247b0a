"""Who may use the web app, checked before any route runs (an ASGI middleware):

- the ``Host`` header must name this server (its bound address, ``localhost``, or a name given with
  ``--allow-host``), so that a web page whose domain is re-pointed at 127.0.0.1 (DNS rebinding) is refused;
- every API call must come from the app's own origin (``Origin`` and ``Sec-Fetch-Site``, when the browser
  sends them) and carry the server's token in the ``X-Sam-Serve-Token`` header. The page reads the token from
  its own HTML (``<meta name="sam-serve-token">``), which another site's page cannot read, so it cannot forge
  a request (a form post or a ``fetch``);
- with a token chosen by the user (``--token``) the page itself is served only to ``/?token=...``.

No CORS header is ever sent, and every answer carries security headers (a Content-Security-Policy without
inline script, ``nosniff``, no referrer, no framing). The security model: docs/serve.md.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import re
import secrets
import socket
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from html import unescape as html_unescape
from typing import Any
from urllib.parse import parse_qs, urlsplit

TOKEN_HEADER = "X-Sam-Serve-Token"
LOCAL_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
ALL_INTERFACES = frozenset({"0.0.0.0", "::", ""})
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; "
                               "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Resource-Policy": "same-origin",
}
_TOKEN_META = re.compile(r'<meta\s+name="sam-serve-token"\s+content="([^"]*)"')

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]]


@dataclass(frozen=True)
class Access:
    """Who may use one server.

    Args:
        token: the server's token, which every API call must carry (``X-Sam-Serve-Token``); random per server
            unless the user chose it.
        bound_host: the address the server listens on.
        allowed_hosts: more host names the ``Host`` header may carry (``--allow-host``); ``"*"`` allows any.
        page_needs_token: serve the page only to ``/?token=<token>`` (a token given with ``--token``).
    """

    token: str
    bound_host: str = "127.0.0.1"
    allowed_hosts: tuple[str, ...] = ()
    page_needs_token: bool = False

    def host_allowed(self, host_header: str) -> bool:
        """Whether a request's ``Host`` header (``name[:port]``) names this server."""
        try:
            name = urlsplit(f"//{host_header}").hostname
        except ValueError:
            return False
        if not name:
            return False
        allowed = {host.lower() for host in self.allowed_hosts}
        if "*" in allowed or name in allowed or name in LOCAL_NAMES or name == self.bound_host.lower():
            return True
        if self.bound_host in ALL_INTERFACES:
            # Rebinding needs a domain name in Host: a bare address is this machine's own (or the request could
            # not have reached it); the machine's own names are known too.
            return _is_address(name) or name in {socket.gethostname().lower(), socket.getfqdn().lower()}
        return False

    def token_matches(self, given: str | None) -> bool:
        return given is not None and hmac.compare_digest(given.encode(), self.token.encode())


def new_token() -> str:
    """A fresh random token for one server (URL-safe, 256 bits)."""
    return secrets.token_urlsafe(32)


def page_token(html: str) -> str:
    """The token in a served page's ``<meta name="sam-serve-token" content="...">``: what scripts send as
    ``X-Sam-Serve-Token``. Raises ``ValueError`` if the page carries none."""
    found = _TOKEN_META.search(html)
    if found is None:
        raise ValueError('the page has no <meta name="sam-serve-token" content="...">')
    return html_unescape(found.group(1))


class AccessGuard:
    """ASGI middleware: refuses what ``Access`` does not allow (403 with ``{"error": ...}``) and adds the
    security headers to every answer.

    Args:
        app: the ASGI app it guards.
        access: who may use it.
    """

    def __init__(self, app: ASGIApp, access: Access) -> None:
        self.app, self.access = app, access

    async def __call__(self, scope: Scope, receive: Callable[[], Awaitable[Message]],
                       send: Callable[[Message], Awaitable[None]]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {key.decode("latin-1").lower(): value.decode("latin-1") for key, value in scope["headers"]}
        refusal = self._refusal(scope, headers)
        if refusal is not None:
            await _send_json(send, 403, {"error": refusal})
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", [])) + [
                    (key.lower().encode(), value.encode()) for key, value in SECURITY_HEADERS.items()]
            await send(message)

        await self.app(scope, receive, with_headers)

    def _refusal(self, scope: Scope, headers: dict[str, str]) -> str | None:
        """Why the request is refused, or None."""
        host = headers.get("host", "")
        if not self.access.host_allowed(host):
            return (f"Host {host!r} is not this server's name; start sam-serve with --allow-host NAME to "
                         f"accept it")
        path = scope["path"]
        if path == "/" and self.access.page_needs_token:
            given = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token", [None])[0]
            if not self.access.token_matches(given):
                return "this server needs its token: open the address sam-serve printed (/?token=...)"
        if not path.startswith("/api/"):
            return None
        origin = headers.get("origin")
        if origin is not None and (origin == "null" or urlsplit(origin).netloc.lower() != host.lower()):
            return f"cross-origin request from {origin} refused: only the app's own page may call its API"
        site = headers.get("sec-fetch-site")
        if site is not None and site not in ("same-origin", "none"):
            return f"{site} request refused: only the app's own page may call its API"
        if not self.access.token_matches(headers.get(TOKEN_HEADER.lower())):
            return (f"missing or wrong {TOKEN_HEADER} header: the page sends it; scripts read it from the "
                         f'page\'s <meta name="sam-serve-token">')
        return None


def _is_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


async def _send_json(send: Callable[[Message], Awaitable[None]], status: int, body: dict[str, str]) -> None:
    data = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    headers += [(key.lower().encode(), value.encode()) for key, value in SECURITY_HEADERS.items()]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})
