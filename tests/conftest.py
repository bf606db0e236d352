"""Fixtures: a fresh mock per test, response validation always on, and no spec violations allowed."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from mockserver.app import MockApp, ServerOptions, create_app
from tests.support import Clients, clients_for


@pytest.fixture
def app() -> Iterator[MockApp]:
    mock = create_app(ServerOptions(validate_responses=True, speed=0))
    yield mock
    violations = mock.violations.drain()
    assert not violations, f"the mock answered outside its own spec: {violations}"


@pytest.fixture
def clients(app: MockApp) -> Iterator[Clients]:
    with clients_for(app) as made:
        yield made


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """`slow` tests (full contract runs, real servers, client venvs: half the suite's time) run
    under `CI=true`, as `.ci/run` and CI services set it; a local `make test` stays short and
    lists each one it left out, with this reason."""
    if os.environ.get("CI"):
        return
    skip = pytest.mark.skip(reason="slow: runs under CI=true (.ci/run sets it; `CI=true make test` locally)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
