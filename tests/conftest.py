"""Fixtures: a fresh mock per test, response validation always on, and no spec violations allowed."""

from __future__ import annotations

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
