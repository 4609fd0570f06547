"""The legal portal (``auditor serve``): an ASGI app over the same store as the CLI."""

from __future__ import annotations
