"""What code produced a result: the package version and, when run from a checkout, the commit."""

from __future__ import annotations

__all__ = ["code_version", "software"]

import functools
import subprocess
from pathlib import Path
from typing import Any

from auditor import __version__

ROOT = Path(__file__).resolve().parents[1]


@functools.cache
def software() -> dict[str, Any]:
    """``{"name", "version", "git_commit", "git_dirty"}``; git fields None outside a checkout."""
    info: dict[str, Any] = {"name": "canary-auditor", "version": __version__,
                            "git_commit": None, "git_dirty": None}
    try:
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain",
                                "--untracked-files=no"], capture_output=True, text=True,
                               timeout=10, check=True).stdout.strip()
        info["git_commit"], info["git_dirty"] = head or None, bool(dirty)
    except (OSError, subprocess.SubprocessError):
        pass
    return info


def code_version() -> str:
    """``0.1.0+abc123def456`` (``.dirty`` when the checkout has uncommitted changes)."""
    info = software()
    if not info["git_commit"]:
        return str(info["version"])
    suffix = ".dirty" if info["git_dirty"] else ""
    return f"{info['version']}+{info['git_commit'][:12]}{suffix}"
