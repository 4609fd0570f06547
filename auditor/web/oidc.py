"""Single sign-on through OpenID Connect (not configured: no routes)."""

from __future__ import annotations

__all__ = ["routes"]

from starlette.routing import BaseRoute

from auditor.config import Settings


def routes(settings: Settings) -> list[BaseRoute]:
    return []
