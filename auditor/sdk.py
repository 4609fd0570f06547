"""What the installed provider SDKs accept, read from their own ``create`` signatures.

The decoding options of the config (``temperature``, ``top_p``, ``seed``, ``stop``,
``max_tokens``) map to one parameter of the SDK's request method each. Which of them an
SDK takes changes between releases (``anthropic`` 2.x dropped ``temperature`` and
``top_p``), so the answer is read from the installed SDK, not written down here: the
config rejects an option the SDK does not take, and the adapters send only what it takes.

The signature is read from the SDK's source with :mod:`ast` rather than by importing
the SDK: loading the config must stay fast, and importing an SDK takes seconds.
"""

from __future__ import annotations

__all__ = ["DECODING", "accepted", "parameters", "unsupported"]

import ast
import importlib.metadata
from functools import cache
from pathlib import Path

from auditor.errors import AuditorError, Problem

# decoding option -> the SDK's parameter, per provider that goes through an SDK
DECODING: dict[str, dict[str, str]] = {
    "openai": {"max_tokens": "max_tokens", "temperature": "temperature", "top_p": "top_p",
               "seed": "seed", "stop": "stop"},
    "anthropic": {"max_tokens": "max_tokens", "temperature": "temperature", "top_p": "top_p",
                  "seed": "seed", "stop": "stop_sequences"},
}
# where the request method is: (distribution, source file, class, method)
_METHOD = {
    "openai": ("openai", "openai/resources/chat/completions/completions.py",
               "AsyncCompletions", "create"),
    "anthropic": ("anthropic", "anthropic/resources/messages/messages.py",
                  "AsyncMessages", "create"),
}


@cache
def parameters(provider: str) -> frozenset[str]:
    """Keyword parameters of the installed SDK's request method (all overloads)."""
    dist, rel, cls, method = _METHOD[provider]
    try:
        version = importlib.metadata.version(dist)
        source = Path(str(importlib.metadata.distribution(dist).locate_file(rel))).read_text(
            "utf-8")
    except (importlib.metadata.PackageNotFoundError, OSError) as exc:
        raise _unreadable(provider, f"{type(exc).__name__}: {exc}") from None
    names: set[str] = set()
    for node in ast.parse(source).body:
        if isinstance(node, ast.ClassDef) and node.name == cls:
            for fn in node.body:
                if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef) and fn.name == method:
                    names.update(a.arg for a in fn.args.args + fn.args.kwonlyargs)
    if not names:
        raise _unreadable(provider, f"no {cls}.{method} in {rel} of {dist} {version}")
    return frozenset(names - {"self"})


def _unreadable(provider: str, why: str) -> AuditorError:
    dist = _METHOD[provider][0]
    return AuditorError(
        f"cannot read what the installed {dist} SDK accepts ({why})",
        [Problem(f"provider {provider!r} needs a {dist} release this auditor supports",
                 fix=f"reinstall the auditor (pip install -e .) so that {dist} is "
                     "within the range pyproject.toml gives")])


def accepted(provider: str) -> dict[str, str] | None:
    """Decoding option -> SDK parameter for the options the installed SDK takes;
    ``None`` for a provider without an SDK (``http``: the body is ours to write)."""
    if provider not in DECODING:
        return None
    params = parameters(provider)
    return {opt: p for opt, p in DECODING[provider].items() if p in params}


def unsupported(provider: str, options: list[str]) -> list[str]:
    """The ``options`` that ``provider``'s installed SDK does not take."""
    takes = accepted(provider)
    return [] if takes is None else [o for o in options if o not in takes]
