"""``auditor serve``: the legal portal (an ASGI app under uvicorn)."""

from __future__ import annotations

__all__ = ["register", "serve"]

import typer

from auditor.cli._common import console_err, settings


def serve(
    host: str = typer.Option(None, "--host", help="Address to bind (default: web.host, "
                             "127.0.0.1; put a TLS reverse proxy in front for other machines)."),
    port: int = typer.Option(None, "--port", help="Port (default: web.port, 8080; 0 = any)."),
) -> None:
    """Serve the legal portal: cases, verdicts, signed reports, custody log, JSON API."""
    import logging

    import uvicorn

    from auditor.logs import setup_logging
    from auditor.store import open_store
    from auditor.web.app import create_app
    from auditor.web.security import QuietQueries

    s = settings()
    store = open_store(s)
    app = create_app(s, store)
    bind = host or s.web.host
    if bind not in ("127.0.0.1", "::1", "localhost") and s.web.secure_cookies == "never":
        console_err.print("warning: serving beyond loopback with web.secure_cookies = "
                          "\"never\"; put TLS in front and set it to \"auto\"", highlight=False)
    # uvicorn's own lines (start, access, errors) go through the auditor's JSON log, with
    # its secrets redacted, instead of uvicorn's plain-text handlers
    setup_logging(s)
    logging.getLogger("uvicorn.access").addFilter(QuietQueries())
    try:
        uvicorn.run(app, host=bind, port=s.web.port if port is None else port,
                    proxy_headers=True, forwarded_allow_ips=s.web.forwarded_allow_ips,
                    server_header=False, log_level=s.log_level.lower(), log_config=None)
    finally:
        store.close()


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
