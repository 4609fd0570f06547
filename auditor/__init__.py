"""The canary auditor: finds and proves distillation of a protected language model."""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
