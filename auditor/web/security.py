"""Security headers, CSRF checks and cookie settings of the portal."""

from __future__ import annotations

__all__ = ["QuietQueries", "SecurityHeaders", "cookie_secure", "same_origin", "tokens_equal"]

import hmac
import logging

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from auditor.config import Web

# No inline script anywhere (there is no script at all); styles only from our own file.
CSP = ("default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
       "frame-ancestors 'none'; base-uri 'none'")
# The timeline figure is matplotlib's SVG, shown with <img> (no script ever runs there).
SVG_CSP = "default-src 'none'; style-src 'unsafe-inline'"

HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",  # no-referrer would make browsers send Origin: null
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
    "permissions-policy": "camera=(), microphone=(), geolocation=(), payment=()",
}


class SecurityHeaders:
    """Adds the security headers to every response; no caching of anything signed-in."""

    def __init__(self, app: ASGIApp, web: Web) -> None:
        self.app, self.web = app, web

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        https = scope.get("scheme") == "https"
        path = scope.get("path", "")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", [])
                           if k.lower() != b"content-security-policy"]
                have = {k.lower() for k, _ in headers}
                csp = SVG_CSP if path.endswith(".svg") else CSP
                headers.append((b"content-security-policy", csp.encode()))
                for k, v in HEADERS.items():
                    if k.encode() not in have:
                        headers.append((k.encode(), v.encode()))
                if not path.startswith("/static/") and b"cache-control" not in have:
                    headers.append((b"cache-control", b"no-store"))
                if https:
                    headers.append((b"strict-transport-security",
                                    b"max-age=31536000; includeSubDomains"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


def cookie_secure(request: Request, web: Web) -> bool:
    if web.secure_cookies == "always":
        return True
    if web.secure_cookies == "never":
        return False
    return request.url.scheme == "https"


def tokens_equal(a: object, b: str | None) -> bool:
    return isinstance(a, str) and bool(b) and hmac.compare_digest(a.encode(), (b or "").encode())


def same_origin(request: Request) -> bool:
    """False when the browser says the POST comes from another site (Sec-Fetch-Site, or
    the Origin header where that is absent)."""
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        return site in ("same-origin", "none")
    origin = request.headers.get("origin")
    if origin is None:  # older browsers and non-browser clients; the CSRF token still counts
        return True
    host = request.headers.get("host", "")
    return origin in (f"{request.url.scheme}://{host}", f"http://{host}", f"https://{host}")


class QuietQueries(logging.Filter):
    """Drops the query string of /oidc/ paths from uvicorn's access log lines: the
    provider's one-time code and state must not reach a log."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str) \
                and args[2].startswith("/oidc/") and "?" in args[2]:
            record.args = (*args[:2], args[2].split("?", 1)[0] + "?…", *args[3:])
        return True
