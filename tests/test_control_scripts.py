"""`/__mock__/scripts` and the script loader under hostile or careless input.

Alias bombs and oversized bodies are refused cheaply, the parse runs off the event loop, a set
without a catch-all is refused unless asked for, a request that matches nothing is reported,
and listed sources never show absolute paths.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import pytest

from mockserver.app import MockApp, ServerOptions, create_app
from mockserver.cli import build_parser
from mockserver.control import api as control_api
from mockserver.engine.scripts import ScriptError, load_scripts_text
from mockserver.engine.scripts.loader import MAX_EXPANDED_NODES, MAX_SCRIPT_BYTES
from mockserver.engine.scripts.regex_safety import backtracking_risk
from tests.support import Clients

PUT = "/__mock__/scripts"
NO_CATCH_ALL = "scripts:\n  - name: hello-only\n    match: {input: hello}\n    reply: {text: Hi there}\n"
WITH_CATCH_ALL = NO_CATCH_ALL + "  - name: rest\n    match: {}\n    reply: {text: Anything else?}\n"


def alias_bomb(levels: int) -> str:
    """The classic "billion laughs": each level is ten aliases of the one before (10**levels leaves)."""
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for level in range(1, levels + 1):
        lines.append(f"a{level}: &a{level} [" + ",".join([f"*a{level - 1}"] * 10) + "]")
    return "\n".join(lines) + f"\nscripts:\n  - name: x\n    reply: {{text: *a{levels}}}\n"


def put(clients: Clients, text: str | bytes, **params: str) -> tuple[int, dict]:
    response = clients.anonymous.request(
        "PUT", PUT, content=text, params=params, headers={"Content-Type": "application/yaml"}
    )
    return response.status_code, response.json()


def names(clients: Clients) -> list[str]:
    return [s["name"] for s in clients.anonymous.get(PUT).json()["scripts"]]


@pytest.mark.parametrize("levels", [6, 9])
def test_alias_bomb_is_refused_quickly_with_a_reason(clients: Clients, levels: int) -> None:
    """A few hundred bytes that would expand to 10**levels nodes: 400 in well under a second."""
    before = names(clients)
    text = alias_bomb(levels)
    assert len(text) < 1000
    started = time.perf_counter()
    status, body = put(clients, text)
    assert time.perf_counter() - started < 1.0
    assert status == 400
    assert "expands to more than" in body["scripts"][0] and body["scripts"][0].startswith("<PUT /__mock__/scripts>:")
    assert names(clients) == before  # nothing changed


def test_a_recursive_alias_is_refused() -> None:
    with pytest.raises(ScriptError, match="recursive alias"):
        load_scripts_text("a: &a [*a]\nscripts: []\n", "rec.yaml")


def test_aliases_within_bounds_still_work() -> None:
    """Anchors are ordinary YAML; shared timing through an alias is fine while the expansion is small."""
    text = (
        "timing: &t {first_chunk_ms: 0, inter_chunk_ms: 0}\n"
        "scripts:\n  - name: a\n    match: {}\n    reply: {text: x, timing: *t}\n"
    )
    with pytest.raises(ScriptError, match="unknown key"):  # `timing` at the top level is not ours...
        load_scripts_text(text, "alias.yaml")
    ok = "scripts:\n  - name: a\n    match: {}\n    reply: &r {text: x}\n  - name: b\n    reply: *r\n"
    assert [s.text for s in load_scripts_text(ok, "alias.yaml")] == ["x", "x"]  # ...but aliases themselves are fine


def test_the_node_bound_counts_expanded_aliases() -> None:
    """Just over the bound is refused, however few distinct nodes the text has."""
    width = 100
    levels = 1
    while width**levels <= MAX_EXPANDED_NODES:
        levels += 1
    lines = ["a0: &a0 [" + ",".join(["x"] * width) + "]"]
    lines += [f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * width) + "]" for i in range(1, levels)]
    with pytest.raises(ScriptError, match="expands to more than"):
        load_scripts_text("\n".join(lines) + "\n", "wide.yaml")


@pytest.mark.parametrize("style", ["block mapping", "flow sequence"])
def test_deep_nesting_is_refused_not_a_crash(clients: Clients, style: str) -> None:
    """Building a deeply nested document recurses; it is refused first (400, never a 500)."""
    depth = 600
    if style == "block mapping":
        text = "".join("  " * i + "a:\n" for i in range(depth)) + "  " * depth + "x\n"
    else:
        text = "[" * depth + "]" * depth + "\n"
    status, body = put(clients, text)
    assert status == 400, body
    assert "nests deeper than" in body["scripts"][0] or "nesting depth" in body["scripts"][0]


def test_an_oversized_body_is_refused_with_413(clients: Clients) -> None:
    before = names(clients)
    status, body = put(clients, b"#" * (MAX_SCRIPT_BYTES + 1))
    assert status == 413 and "too large" in body["detail"]
    assert names(clients) == before


def test_config_patch_is_bounded_and_deep_json_is_a_parse_error(clients: Clients) -> None:
    """PATCH /__mock__/config: a huge body answers 413, JSON nested thousands deep 400, never a 500."""
    patch = clients.anonymous.request
    huge = patch("PATCH", "/__mock__/config", content=b" " * (70 * 1024), headers={"Content-Type": "application/json"})
    assert huge.status_code == 413 and "too large" in huge.json()["detail"]
    deep = patch("PATCH", "/__mock__/config", content=b"[" * 60000, headers={"Content-Type": "application/json"})
    assert deep.status_code == 400 and "JSON parse error" in deep.json()["detail"]
    fine = patch("PATCH", "/__mock__/config", json={"faults": {"drop_after_records": 2}})
    assert fine.json()["faults"] == {"drop_after_records": 2}


def test_oversized_text_is_refused_by_the_loader_too() -> None:
    """The same bound applies to files given with --scripts."""
    with pytest.raises(ScriptError, match="bytes; at most"):
        load_scripts_text("#" * (MAX_SCRIPT_BYTES + 1), "big.yaml")


def test_put_parses_off_the_event_loop(clients: Clients, monkeypatch: pytest.MonkeyPatch) -> None:
    """The YAML parse and checks run in a worker thread, so a slow one cannot stall other requests."""
    seen: list[bool] = []
    real = control_api.load_scripts_text

    def spying(text: str, source: str) -> list:
        try:
            asyncio.get_running_loop()
            seen.append(True)
        except RuntimeError:
            seen.append(False)
        return real(text, source)

    monkeypatch.setattr(control_api, "load_scripts_text", spying)
    assert put(clients, WITH_CATCH_ALL)[0] == 200
    assert seen == [False]


def test_a_set_without_catch_all_is_refused_unless_allowed(clients: Clients) -> None:
    before = names(clients)
    status, body = put(clients, NO_CATCH_ALL)
    assert status == 400 and "no catch-all" in body["scripts"][0]
    assert names(clients) == before
    assert put(clients, NO_CATCH_ALL, allow_no_catch_all="true")[0] == 200
    assert names(clients) == ["hello-only"]
    assert put(clients, WITH_CATCH_ALL)[0] == 200


def test_a_bad_allow_value_is_refused(clients: Clients) -> None:
    status, body = put(clients, NO_CATCH_ALL, allow_no_catch_all="maybe")
    assert (status, list(body)) == (400, ["allow_no_catch_all"])


def test_a_request_that_matches_nothing_is_reported(clients: Clients, caplog: pytest.LogCaptureFixture) -> None:
    """The reply is empty (as before) but the log and the request's journal entry say why."""
    assert put(clients, NO_CATCH_ALL, allow_no_catch_all="true")[0] == 200
    with caplog.at_level(logging.WARNING, logger="mockserver.engine"):
        result = clients.alice.stream(input="What is a VM?")
        matched = clients.alice.stream(input="hello")
    assert [r for r in result.records if "m" not in r] == []
    assert any(
        "no reply script matches" in r.getMessage() and "What is a VM?" in r.getMessage() for r in caplog.records
    )
    entries = clients.anonymous.get("/__mock__/requests").json()["requests"]
    warning = entries[0]["warnings"]
    assert len(warning) == 1 and "mode message" in warning[0] and "What is a VM?" in warning[0]
    assert entries[1]["warnings"] == [] and matched.text == "Hi there"


def test_start_up_refuses_scripts_without_catch_all_unless_allowed(tmp_path: Path) -> None:
    file = tmp_path / "only.yaml"
    file.write_text(NO_CATCH_ALL)
    with pytest.raises(ScriptError, match="no catch-all") as caught:
        create_app(ServerOptions(scripts=file, speed=0))
    assert caught.value.source == str(file)
    app = create_app(ServerOptions(scripts=file, speed=0, allow_no_catch_all=True))
    assert app.engine.scenario_names() == ["hello-only"]


def test_serve_has_the_allow_flag() -> None:
    assert build_parser().parse_args(["serve", "--allow-no-catch-all"]).allow_no_catch_all is True
    assert build_parser().parse_args(["serve"]).allow_no_catch_all is False


def test_listed_sources_are_relative_to_the_scripts_root(app: MockApp, clients: Clients) -> None:
    """`GET /__mock__/scripts` shows `default.yaml:N`, never where the mock is installed."""
    sources = [s["source"] for s in clients.anonymous.get(PUT).json()["scripts"]]
    assert sources and all(s.startswith("default.yaml:") for s in sources), sources
    assert not any(str(Path(app.scripts_path).resolve()) in s for s in sources)
    put(clients, WITH_CATCH_ALL)
    assert [s["source"] for s in clients.anonymous.get(PUT).json()["scripts"]] == [
        "<PUT /__mock__/scripts>:2",
        "<PUT /__mock__/scripts>:5",
    ]


# -- regexes that backtrack for minutes ---------------------------------------------------------
@pytest.mark.parametrize("pattern", ["^(a+)+$", r"(\w*)*x", "(a|aa)+$", "((ab)*c)+", "(x+){2,}", "(?:a|b){1,99}"])
def test_a_regex_that_can_backtrack_for_minutes_is_refused(pattern: str) -> None:
    assert backtracking_risk(pattern) is not None
    text = f"scripts:\n  - name: slow\n    match: {{input: {{regex: '{pattern}'}}}}\n    reply: {{text: x}}\n"
    with pytest.raises(ScriptError, match="could take minutes"):
        load_scripts_text(text, "slow.yaml")


@pytest.mark.parametrize(
    "pattern",
    [r"^list\b", r"\b(code|snippet)\b", r"(ab)+c", r"[(a+)+]*", r"\(a+\)+", "(a|b)?", "(foo){2}", r"x{1,}", "a{,3}"],
)
def test_ordinary_regexes_are_accepted(pattern: str) -> None:
    assert backtracking_risk(pattern) is None


def test_a_backtracking_regex_is_refused_over_the_control_api_and_the_server_stays_responsive(
    clients: Clients,
) -> None:
    text = (
        "scripts:\n  - name: slow\n    match: {input: {regex: '^(a+)+$'}}\n    reply: {text: x}\n"
        "  - name: any\n    match: {}\n    reply: {text: y}\n"
    )
    status, body = put(clients, text)
    assert status == 400 and "could take minutes" in body["scripts"][0]
    started = time.monotonic()
    response = clients.alice.stream(input="a" * 31 + "!")
    assert response.status_code == 200 and time.monotonic() - started < 5


def test_config_token_limits_are_bounded_like_set_quota(clients: Clients) -> None:
    """Waldur's 32-bit columns: the control API refuses what set_quota refuses."""
    too_big = {"token_limits": {"alice": {"daily_limit": 2_147_483_648}}}
    response = clients.anonymous.request("PATCH", "/__mock__/config", json=too_big)
    assert response.status_code == 400 and "less than or equal to 2147483647" in response.text
    fits = {"token_limits": {"alice": {"daily_limit": 2_147_483_647}}}
    assert clients.anonymous.request("PATCH", "/__mock__/config", json=fits).status_code == 200
