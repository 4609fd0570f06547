"""A real portal on loopback: uvicorn on port 0 over a store filled through the real paths
(tests/report/world.py), with one account per role."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import uvicorn

from auditor.config import Settings
from auditor.signing import init_key
from auditor.store import Store, open_store
from auditor.web import accounts
from auditor.web.app import create_app
from tests.report.world import (
    START,
    World,
    add_verdict,
    build_world,
    fill_store,
    make_settings,
)

PASSWORD = "a long enough passphrase 42"
ROLES = ("legal", "analyst", "admin")


@dataclass
class Live:
    url: str
    settings: Settings
    store: Store
    tmp: Path

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, follow_redirects=False, timeout=60)

    def signin(self, user: str, password: str = PASSWORD,
               client: httpx.Client | None = None) -> httpx.Client:
        c = client or self.client()
        form = c.get("/signin")
        csrf = hidden(form.text, "csrf")
        r = c.post("/signin", data={"csrf": csrf, "username": user, "password": password,
                                    "next": "/cases"})
        assert r.status_code == 303, r.text
        return c


def hidden(html: str, name: str) -> str:
    m = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert m, f"no hidden {name} in the page"
    return m.group(1)


class Server:
    def __init__(self, app: object) -> None:
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0,  # type: ignore[arg-type]
                                                    log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the portal did not start")
            time.sleep(0.02)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)


def _world_on(tmp: Path, database_url: str) -> World:
    """build_world's store, on another database (the local PostgreSQL)."""
    settings = make_settings(tmp).model_copy(update={"database_url": database_url})
    store = open_store(database_url, migrate=True)
    key = init_key(settings.signing.key_path)
    fill_store(store, settings, 8, key=key)
    for day, p, sig, eff in ((2, 0.04, False, 0.12), (3, 2e-3, True, 0.22),
                             (4, 3.2e-6, True, 0.31)):
        add_verdict(store, 8, START + timedelta(days=day), p, sig, eff)
    return World(tmp, settings, store, 8)


def start_portal(tmp: Path, database_url: str | None = None, **web: object) -> Iterator[Live]:
    world = _world_on(tmp, database_url) if database_url else build_world(tmp, n_canaries=8)
    settings = world.settings.model_copy(update={
        "web": world.settings.web.model_copy(update=web)})
    with world.store.session() as s:
        for role in ROLES:
            accounts.add_user(s, role, role, PASSWORD)
    server = Server(create_app(settings, world.store))
    url = server.start()
    try:
        yield Live(url, settings, world.store, tmp)
    finally:
        server.stop()
        world.store.close()


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Live]:
    yield from start_portal(tmp_path)
