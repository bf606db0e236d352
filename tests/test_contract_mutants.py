"""Proof that the contract suite has teeth: each realistic bug injected into the mock is caught.

For every mutant of `tests/mutants.py` the suite runs (only the part that should catch it,
with a small budget) and must fail with the expected check name and a reproduction. The
unmutated mock passes the very same runs, so no mutant test passes merely because the
suite fails on everything.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from starlette.types import ASGIApp

from mockserver.app import MockApp, ServerOptions, create_app
from mockserver.contract.report import summary
from mockserver.contract.runner import Report, VerifyOptions, verify
from mockserver.openapi.loader import WALDUR_SPEC
from tests.mutants import MUTANTS, PROFILES, Mutant, Profile


def fresh_app() -> MockApp:
    """Response validation off: a mutant breaks the spec on purpose; instant replies."""
    return create_app(ServerOptions(validate_responses=False, speed=0))


def narrowed_spec(paths: tuple[str, ...], directory: Path) -> Path:
    """The spec with only `paths`, and without links to operations that left with the others."""
    document: dict[str, Any] = copy.deepcopy(yaml.safe_load(WALDUR_SPEC.read_text(encoding="utf-8")))
    document["paths"] = {path: item for path, item in document["paths"].items() if path in paths}
    kept = {op["operationId"] for item in document["paths"].values() for op in item.values() if isinstance(op, dict)}
    for item in document["paths"].values():
        for operation in item.values():
            for response in (operation.get("responses") or {}).values() if isinstance(operation, dict) else ():
                links = response.get("links") if isinstance(response, dict) else None
                if links:
                    response["links"] = {k: v for k, v in links.items() if v.get("operationId") in kept}
    target = directory / f"spec-{abs(hash(paths)):x}.yaml"
    target.write_text(yaml.safe_dump(document, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return target


@pytest.fixture(scope="module")
def spec_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("specs")


def run_suite(target: ASGIApp, profile: Profile, spec_dir: Path) -> Report:
    """The suite as `waldur-chat-mock verify` runs it, restricted to the mutant's profile.

    No seed: the behaviour part is then derandomized, so the same examples run every time.
    """
    options = VerifyOptions(
        base_url="http://mock", token="alice-token", other_token="bob-token", staff_token="staff-token",
        max_streams=200, max_examples=profile.max_examples, only=profile.only, app=target, stream_timeout=20,
    )
    if profile.paths:
        options.spec = narrowed_spec(profile.paths, spec_dir)
    return verify(options)


def _cases() -> list[Any]:
    marks = {m.id: [pytest.mark.xfail(strict=True, reason=m.gap)] if m.gap else [] for m in MUTANTS}
    return [pytest.param(m, id=m.id, marks=marks[m.id]) for m in MUTANTS]


@pytest.mark.parametrize("mutant", _cases())
def test_the_suite_catches_the_mutant(mutant: Mutant, spec_dir: Path) -> None:
    report = run_suite(mutant.inject(fresh_app()), mutant.profile, spec_dir)
    assert not report.ok, f"{mutant.bug}: the suite passed\n{summary(report)}"
    caught = [r for r in report.failed if r.check in mutant.catches]
    assert caught, f"{mutant.bug}: expected one of {mutant.catches}, failed {sorted(report.names())}\n{summary(report)}"
    for result in caught:
        assert result.steps, f"{result.check} failed without reproduction steps"
        assert all(step.render().split()[0] in {"GET", "POST", "PATCH"} for step in result.steps)


@pytest.mark.parametrize("profile", PROFILES, ids=[p.label for p in PROFILES])
def test_the_unmutated_mock_passes_the_same_runs(profile: Profile, spec_dir: Path) -> None:
    report = run_suite(fresh_app(), profile, spec_dir)
    assert report.ok, summary(report)
    assert not report.names("skipped"), summary(report)


def test_mutants_are_distinct() -> None:
    """One id per mutant, and no two mutants are the same bug under different names."""
    assert len({m.id for m in MUTANTS}) == len(MUTANTS)
    assert len({m.inject for m in MUTANTS}) == len(MUTANTS)
