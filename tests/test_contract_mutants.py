"""Proof that the contract suite has teeth: each realistic bug injected into the mock is caught.

For every mutant of `tests/mutants.py` the suite runs (only the part that should catch it,
with a small budget) and must fail with the expected check name and a reproduction. The
unmutated mock passes the very same runs, so no mutant test passes merely because the
suite fails on everything. A mutant the suite misses today is a strict xfail naming the gap.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis.internal.conjecture import engine as hypothesis_engine
from starlette.types import ASGIApp

from mockserver.app import MockApp, ServerOptions, create_app
from mockserver.contract.report import summary
from mockserver.contract.runner import PARTS, Report, VerifyOptions, plan_budget, verify
from tests.mutants import CAUGHT_AT_DEFAULTS, MUTANTS, PROFILES, Mutant, Profile, narrowed_spec

# Never runs out here: with a budget that runs out, a behaviour violation crashes the run
# instead of being reported (test_a_violation_under_the_default_stream_budget_is_reported).
STREAMS = 100_000


@pytest.fixture
def no_shrinking(monkeypatch: pytest.MonkeyPatch) -> None:
    """Stop hypothesis after its first successful shrink (its own cap is 500 shrinks or 5 min).

    What is asserted is the verdict, the check name and that steps exist, not how short the
    reproduction got; unshrunk, a failing state machine costs ~0.5 s instead of up to ~30 s,
    and the result does not depend on how fast the machine is."""
    monkeypatch.setattr(hypothesis_engine, "MAX_SHRINKS", 0, raising=False)


def fresh_app() -> MockApp:
    """Response validation off: a mutant breaks the spec on purpose; instant replies."""
    return create_app(ServerOptions(validate_responses=False, speed=0))


@pytest.fixture(scope="module")
def spec_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("specs")


def run_suite(target: ASGIApp, profile: Profile, spec_dir: Path) -> Report:
    """The suite as `waldur-chat-mock verify` runs it, restricted to the profile.

    No seed: the behaviour part is then derandomized, so the same examples run every time.
    """
    options = VerifyOptions(
        base_url="http://mock",
        token="alice-token",
        other_token="bob-token",
        staff_token="staff-token",
        max_streams=STREAMS,
        max_examples=profile.max_examples,
        only=profile.only,
        app=target,
        stream_timeout=20,
    )
    if profile.paths:
        options.spec = narrowed_spec(profile.paths, spec_dir)
    return verify(options)


def _cases() -> list[Any]:
    def marks(mutant: Mutant) -> list[pytest.MarkDecorator]:
        return [pytest.mark.xfail(strict=True, raises=AssertionError, reason=mutant.gap)] if mutant.gap else []

    return [pytest.param(m, id=m.id, marks=marks(m)) for m in MUTANTS]


@pytest.mark.usefixtures("no_shrinking")
@pytest.mark.parametrize("mutant", _cases())
def test_the_suite_catches_the_mutant(mutant: Mutant, spec_dir: Path) -> None:
    report = run_suite(mutant.inject(fresh_app()), mutant.profile, spec_dir)
    assert not report.ok, f"{mutant.bug}: the suite passed\n{summary(report)}"
    caught = [r for r in report.failed if r.diagnosis in mutant.catches]
    assert caught, f"{mutant.bug}: expected one of {mutant.catches}, failed {sorted(report.names())}\n{summary(report)}"
    for result in caught:
        assert result.steps, f"{result.check} failed without reproduction steps"
        assert all(step.method and step.path.startswith("/") for step in result.steps), summary(report)


@pytest.mark.usefixtures("no_shrinking")
@pytest.mark.parametrize("profile", PROFILES, ids=[p.label for p in PROFILES])
def test_the_unmutated_mock_passes_the_same_runs(profile: Profile, spec_dir: Path) -> None:
    report = run_suite(fresh_app(), profile, spec_dir)
    assert report.ok, summary(report)
    assert not report.incomplete, summary(report)


def test_mutants_are_distinct() -> None:
    """One id and one injection per mutant: no bug counted twice under two names."""
    assert len({m.id for m in MUTANTS}) == len(MUTANTS)
    assert len({m.inject for m in MUTANTS}) == len(MUTANTS)


def test_a_violation_under_the_default_stream_budget_is_reported() -> None:
    """`verify`'s default budget (12 streams), shrinking as usual: a violation must be a verdict, not a crash."""
    mutant = next(m for m in MUTANTS if m.id == "message-count-off-by-one")
    options = VerifyOptions(
        base_url="http://mock",
        token="alice-token",
        other_token="bob-token",
        staff_token="staff-token",
        max_examples=10,
        only=("behaviour",),
        app=mutant.inject(fresh_app()),
        stream_timeout=20,
    )
    assert "behaviour.message_count" in verify(options).names("failed")


def test_one_configuration_bug_is_reported_once(spec_dir: Path) -> None:
    """Only the check that diagnoses the bug fails; the scenarios after it start from a sane state."""
    mutant = next(m for m in MUTANTS if m.id == "auth-before-feature-flag")
    report = run_suite(mutant.inject(fresh_app()), mutant.profile, spec_dir)
    assert report.names("failed") == set(mutant.catches), summary(report)


def test_the_readme_lists_every_mutant_with_its_check() -> None:
    """The README's table of bugs the suite catches is the catalogue, not a copy that drifts."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    for mutant in MUTANTS:
        assert mutant.bug in readme and all(check in readme for check in mutant.catches), mutant.id


@pytest.mark.slow
@pytest.mark.parametrize("mutant", [m for m in MUTANTS if m.id in CAUGHT_AT_DEFAULTS], ids=lambda m: m.id)
def test_verify_at_its_defaults_catches_the_realistic_bug(mutant: Mutant) -> None:
    """The README's command (three tokens, every other option at its default): the planned
    budget leaves each part the streams it needs, so the bug is caught.

    The stream, behaviour and configuration parts run with exactly the streams the default
    plan gives them; the schema part, which spends its own share whole at the defaults
    (and 20-30 s over the whole spec), is left out here: it runs at the defaults in
    `test_contract_verify.py::test_the_readme_command_runs_every_part_over_http`."""
    defaults = VerifyOptions(base_url="http://mock", token="alice-token", other_token="bob-token")
    plan = plan_budget(defaults.max_streams, PARTS)
    options = VerifyOptions(
        base_url="http://mock",
        token="alice-token",
        other_token="bob-token",
        only=("stream", "behaviour", "configuration"),
        max_streams=plan["stream"] + plan["behaviour"],
        app=mutant.inject(fresh_app()),
    )
    report = verify(options)
    assert report.budget["behaviour"].granted == plan["behaviour"], summary(report)
    assert set(mutant.catches) & report.names("failed"), f"{mutant.bug}: not caught\n{summary(report)}"
    assert all(r.steps for r in report.failed), summary(report)
