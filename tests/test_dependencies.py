"""The installed dependencies are inside the ranges pyproject.toml declares.

The ranges are the versions the suite has run against; an environment outside them (a
hand-installed upgrade, a stale venv) fails here, loudly, instead of at a user's first
command.
"""

from __future__ import annotations

import tomllib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest
from packaging.requirements import Requirement

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"
_PROJECT = tomllib.loads(PYPROJECT.read_text())["project"]
# the runtime dependencies, and the dev extras the suite itself runs on
REQUIREMENTS = [Requirement(r) for r in
                [*_PROJECT["dependencies"], *_PROJECT["optional-dependencies"]["dev"]]]


@pytest.mark.parametrize("req", REQUIREMENTS, ids=lambda r: r.name)
def test_installed_version_is_inside_the_declared_range(req: Requirement) -> None:
    try:
        installed = version(req.name)
    except PackageNotFoundError:
        pytest.fail(f"{req.name} is not installed; run scripts/test to install the project")
    assert req.specifier.contains(installed, prereleases=True), (
        f"{req.name} {installed} is outside {req.specifier}: run the suite against it, then "
        "widen the range in pyproject.toml (README: Dependencies)")


@pytest.mark.parametrize("req", REQUIREMENTS, ids=lambda r: r.name)
def test_every_dependency_has_an_upper_bound(req: Requirement) -> None:
    assert any(s.operator in ("<", "<=", "==", "~=") for s in req.specifier), (
        f"{req.name}: give an upper bound below the next major release")
