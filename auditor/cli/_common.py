"""What every command shares: the settings, the store, the consoles."""

from __future__ import annotations

__all__ = ["console", "console_err", "open_session", "settings", "state", "store"]

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from rich.console import Console
from sqlalchemy.orm import Session

from auditor.config import Settings, load_settings
from auditor.store import Store, open_store

console = Console()
console_err = Console(stderr=True)


@dataclass
class _State:
    config_path: str | None = None
    _settings: Settings | None = None


state = _State()


def settings() -> Settings:
    if state._settings is None:
        state._settings = load_settings(state.config_path)
    return state._settings


def store() -> Store:
    return open_store(settings())


@contextmanager
def open_session() -> Iterator[Session]:
    """One transaction on the configured store, committed on success; the store is closed."""
    st = store()
    try:
        with st.session() as s:
            yield s
    finally:
        st.close()
