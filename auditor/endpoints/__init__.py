"""Endpoint adapters, one module per wire protocol, all behind :class:`Adapter`."""

from __future__ import annotations

__all__ = [
    "Adapter",
    "ProbeError",
    "Request",
    "Result",
    "base_url",
    "make_adapter",
    "request_for",
]

from auditor.config import Endpoint
from auditor.endpoints.base import Adapter, ProbeError, Request, Result, base_url, request_for


def make_adapter(endpoint: Endpoint) -> Adapter:
    """The adapter for ``endpoint.provider``; reads the API key from its variable now."""
    if endpoint.provider == "openai":
        from auditor.endpoints.openai import OpenAIAdapter

        return OpenAIAdapter(endpoint)
    if endpoint.provider == "anthropic":
        from auditor.endpoints.anthropic import AnthropicAdapter

        return AnthropicAdapter(endpoint)
    from auditor.endpoints.http import HttpAdapter

    return HttpAdapter(endpoint)
