"""Fixtures of the web suite: a store holding a small job and one finished run, and a client
of the app built on it (in process)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from web_helpers import DEMO, apply_text, run_to_end

from taskplan.engine import Engine


@pytest.fixture
def demo(engine: Engine) -> tuple[Engine, int]:
    """The demo job applied and run once (it fails: task `fail` exits 3)."""
    version_id = apply_text(engine, DEMO)
    run_id = engine.create_run(version_id)
    assert run_to_end(engine, run_id) == "failed"
    return engine, run_id


@pytest.fixture
def client(demo: tuple[Engine, int]) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    from taskplan.web.app import create_app

    with TestClient(create_app(demo[0])) as c:
        yield c


