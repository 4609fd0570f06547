"""Imports run downward only: the store and the pure statistics never reach up into the
stages that use them, and nothing but the command line imports the command line."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "auditor"

# module prefix -> prefixes it must never import
FORBIDDEN = {
    "auditor.store": ("auditor.registry", "auditor.probe", "auditor.analysis", "auditor.report",
                      "auditor.cli", "auditor.daemon", "auditor.demo"),
    "auditor.stats": ("auditor.store", "auditor.analysis", "auditor.cli", "auditor.daemon"),
    "auditor.demo": ("auditor.cli",),
    "auditor.daemon": ("auditor.cli",),
    "auditor.report": ("auditor.cli", "auditor.daemon"),
    "auditor.analysis": ("auditor.cli", "auditor.daemon"),
    "auditor.web": ("auditor.cli", "auditor.daemon", "auditor.demo", "auditor.probe",
                    "auditor.scheduler"),
}


def _modules() -> list[tuple[str, Path]]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out.append((name, path))
    return out


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return found


@pytest.mark.parametrize("name,path", _modules(), ids=lambda x: str(x))
def test_imports_run_downward(name: str, path: Path) -> None:
    for prefix, banned in FORBIDDEN.items():
        if name == prefix or name.startswith(prefix + "."):
            bad = sorted(i for i in _imports(path) for b in banned
                         if i == b or i.startswith(b + "."))
            assert not bad, f"{name} imports {bad}, which sit above it"
