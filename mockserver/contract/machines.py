"""The behaviour part's state machine, composed from rule sets by what the API is known to do.

`ChatMachine` holds the rules every chat API with threads shares; each rule set here adds
what one trait (`ApiTraits`) says: title calls where the client names threads, the names a
server gives, cancel, feedback, stats and the day-bound thread filters. Composing classes
(rather than guarding rules with preconditions) keeps the rule set, and so the derandomized
examples, of an API without a trait exactly what it was.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.errors import FlakyStrategyDefinition
from hypothesis.stateful import rule, run_state_machine_as_test

from mockserver.contract.behaviour import MARK, Budget, ChatMachine, ThreadModel
from mockserver.contract.findings import ContractViolation, Step
from mockserver.contract.streams import StreamChecker, StreamExpectation
from mockserver.contract.target import Target
from mockserver.profiles.base import ApiTraits

WHO = st.sampled_from(["user", "other"])
UNKNOWN_UUID = "f" * 32  # no thread or message has it: the suite never makes one
DEFAULT_NAME = "New chat"  # a thread's name until it is named
NAME_MAX = 150
FEEDBACK_CATEGORIES = ("inaccurate", "incomplete", "misunderstood", "other", "slow_or_failed")
FEEDBACK_ROLE_ERROR = "Feedback can only be given on assistant messages."
COMMENT_MAX = 2000
RATE_TOLERANCE = 0.005  # a satisfaction rate rounded to two places still agrees
Keep = Callable[[dict[str, Any]], bool]


def stranger(who: str) -> str:
    return "other" if who == "user" else "user"


class ClientNamingRules(ChatMachine):
    """The client names a thread with a second stream call carrying `update_thread_name`."""

    @rule(thread=ChatMachine.threads)
    def title(self, thread: str) -> None:
        model = self.known(thread)
        if model is None:
            return
        if not self.budget.take():
            return
        self.stream(
            model.owner, {"input": f"{MARK} title", "update_thread_name": thread}, StreamExpectation(title_call=True)
        )
        self.check_thread(model)


class ServerNamingRules(ChatMachine):
    """The server names a new thread (a second upstream call) before the stream's final `m`;
    later turns never rename it."""

    def named(self, model: ThreadModel, data: dict[str, Any]) -> None:
        name = data.get("name")
        if not isinstance(name, str) or not name.strip() or len(name) > NAME_MAX or name == DEFAULT_NAME:
            raise self.fail("behaviour.server_names_thread", f"the new thread's name is {name!r}")
        model.name = name


class CancelRules(ChatMachine):
    """`cancel`: owner only, idempotent; with no stream running it changes nothing one can see."""

    @rule(thread=ChatMachine.threads, twice=st.booleans())
    def cancel(self, thread: str, twice: bool) -> None:
        model = self.known(thread)
        if model is None:
            return
        for _ in range(2 if twice else 1):
            response = self.call("POST", f"/api/chat-threads/{thread}/cancel/", model.owner)
            self.expect_status(response, 200, "behaviour.cancel_status")
        self.check_thread(model)

    @rule(thread=ChatMachine.threads)
    def cancel_refused(self, thread: str) -> None:
        """Another user's thread and an unknown one are both 404, and the thread is untouched."""
        model = self.known(thread)
        if model is None:
            return
        foreign = self.call("POST", f"/api/chat-threads/{thread}/cancel/", stranger(model.owner))
        self.expect_status(foreign, 404, "behaviour.cancel_foreign_refused")
        unknown = self.call("POST", f"/api/chat-threads/{UNKNOWN_UUID}/cancel/", model.owner)
        self.expect_status(unknown, 404, "behaviour.cancel_unknown_refused")
        self.check_thread(model)


class FeedbackRules(ChatMachine):
    """Feedback on answers: the model keeps each score; rows, `has_feedback` and the
    `feedback_score` filter must show it."""

    @rule(
        thread=ChatMachine.threads,
        score=st.booleans(),
        comment=st.sampled_from([None, "", f"{MARK} fine", "x" * COMMENT_MAX]),
        category=st.sampled_from([None, *FEEDBACK_CATEGORIES]),
    )
    def feedback(self, thread: str, score: bool, comment: str | None, category: str | None) -> None:
        """A comment or category of None is left out of the body; praise has no category (that
        is a 400: `feedback_refused`). The last feedback given wins."""
        model = self.known(thread)
        if model is None:
            return
        _, answer = self.last_rows(model)
        if answer is None:
            return
        body: dict[str, Any] = {"score": score}
        body.update({"comment": comment} if comment is not None else {})
        body.update({"category": category} if category is not None and not score else {})
        response = self.give_feedback(answer, model.owner, body)
        self.expect_status(response, 200, "behaviour.feedback_status")
        self.check_feedback_answer(response.json(), answer, body)
        if not model.known:  # rows unknown to the model: only this answer's feedback is sure
            if self.retrieve(model).get("has_feedback") is not True:
                raise self.fail("behaviour.has_feedback", "has_feedback is not true after feedback on an answer")
            return
        row = next(r for r in model.rows if r.uuid == answer)
        row.feedback = score
        self.check_thread(model)

    def last_rows(self, model: ThreadModel) -> tuple[str | None, str | None]:
        """The last active question and answer: the model's, or (a thread made before this
        example) the target's own list."""
        if model.known:
            question, answer = model.last_active("user"), model.last_active("assistant")
            return (question.uuid if question else None), (answer.uuid if answer else None)
        response = self.call("GET", "/api/chat-messages/", model.owner, params={"thread": model.uuid})
        self.expect_status(response, 200, "behaviour.messages_list")
        rows = sorted(response.json(), key=lambda row: row["sequence_index"])
        last = {row["role"]: row["uuid"] for row in rows}
        return last.get("user"), last.get("assistant")

    def check_feedback_answer(self, data: Any, uuid: str, body: dict[str, Any]) -> None:
        """The 200 carries the Message with the feedback just given (fields not sent are not checked)."""
        got = {key: data.get(f"feedback_{key}") for key in body} if isinstance(data, dict) else {}
        if not isinstance(data, dict) or data.get("uuid") != uuid or got != body:
            raise self.fail("behaviour.feedback_answer", f"sent {body}, the answer shows {got}")
        if not isinstance(data.get("feedback_submitted_at"), str):
            raise self.fail("behaviour.feedback_answer", "feedback_submitted_at is not set")

    @rule(thread=ChatMachine.threads)
    def feedback_refused(self, thread: str) -> None:
        """A question, another user's answer, an unknown message and bad bodies (a category with
        praise, one not in the enum, a comment too long) are refused, and change nothing."""
        model = self.known(thread)
        if model is None:
            return
        question, answer = self.last_rows(model)
        if question is not None:
            response = self.give_feedback(question, model.owner, {"score": True})
            self.expect_status(response, 400, "behaviour.feedback_on_question_refused")
            if FEEDBACK_ROLE_ERROR not in response.text:
                raise self.fail("behaviour.feedback_on_question_refused", f"the 400 says {response.text[:200]}")
        if answer is not None:
            foreign = self.give_feedback(answer, stranger(model.owner), {"score": False})
            self.expect_status(foreign, 404, "behaviour.feedback_foreign_refused")
            praise = self.give_feedback(answer, model.owner, {"score": True, "category": "inaccurate"})
            self.expect_status(praise, 400, "behaviour.feedback_category_needs_negative")
            for bad in ({"score": False, "category": "rude"}, {"score": False, "comment": "x" * (COMMENT_MAX + 1)}):
                response = self.give_feedback(answer, model.owner, bad)
                self.expect_status(response, 400, "behaviour.feedback_body_refused")
        unknown = self.give_feedback(UNKNOWN_UUID, model.owner, {"score": True})
        self.expect_status(unknown, 404, "behaviour.feedback_unknown_refused")
        self.check_thread(model)

    def give_feedback(self, message: str, who: str, body: dict[str, Any]) -> Any:
        return self.call("POST", f"/api/chat-messages/{message}/feedback/", who, json=body)

    @rule(thread=ChatMachine.threads, score=st.booleans())
    def feedback_filter(self, thread: str, score: bool) -> None:
        """`feedback_score` lists exactly the thread's rows the model scored so."""
        model = self.known(thread)
        if model is None or not model.known:
            return
        params = {"thread": thread, "include_history": "true", "feedback_score": str(score).lower()}
        response = self.call("GET", "/api/chat-messages/", model.owner, params=params)
        self.expect_status(response, 200, "behaviour.messages_list")
        listed = sorted(row["uuid"] for row in response.json())
        wanted = sorted(r.uuid for r in model.rows if r.feedback is score)
        if listed != wanted:
            message = f"listed {len(listed)} rows, the model has {len(wanted)}"
            raise self.fail("behaviour.filter_feedback_score", message)


def _day(moment: str) -> date:
    return datetime.fromisoformat(moment).astimezone(UTC).date()


def _token_value(thread: dict[str, Any], name: str) -> int | None:
    value = thread.get(name)
    return value if isinstance(value, int) else None


def thread_filter(kind: str, sample: dict[str, Any], shift: int) -> tuple[str, str, Keep]:
    """One list filter with a value taken from `sample` and moved by `shift`, and the test a
    thread of the unfiltered list must pass to be listed with it."""
    if kind in ("created", "modified"):  # exact days are gone: ignored, as unknown parameters
        return kind, (_day(sample[kind]) + timedelta(days=2 + shift)).isoformat(), lambda t: True
    if kind == "scope":
        return kind, "own", lambda t: True  # a regular user sees own threads only anyway
    if kind == "has_feedback":
        wanted = bool(sample.get("has_feedback")) != (shift < 0)
        return kind, str(wanted).lower(), lambda t: t.get("has_feedback") is wanted
    name, bound = kind.rsplit("_", 1)
    if name in ("created", "modified"):
        day = _day(sample[name]) + timedelta(days=shift)
        after = bound == "after"
        return kind, day.isoformat(), lambda t: (_day(t[name]) >= day) if after else (_day(t[name]) <= day)
    limit = max(0, (_token_value(sample, name) or 0) + shift)
    at_least = bound == "min"

    def keep(thread: dict[str, Any]) -> bool:
        value = _token_value(thread, name)  # a null total passes no bound (SQL's comparison with NULL)
        return value is not None and (value >= limit if at_least else value <= limit)

    return kind, str(limit), keep


DAY_BOUNDS = ("created_after", "created_before", "modified_after", "modified_before")
TOKEN_BOUNDS = tuple(f"{n}_tokens_{b}" for n in ("input", "output", "total") for b in ("min", "max"))
FILTERS = (*DAY_BOUNDS, *TOKEN_BOUNDS, "has_feedback", "scope", "created", "modified")
TOKEN_ORDERS = ("total_tokens", "-total_tokens", "input_tokens", "-output_tokens", "models_used,-created")


class BoundFilterRules(ChatMachine):
    """Day bounds, token bounds, `has_feedback` and `scope` agree with the list filtered here;
    the token orderings hold; the exact-day `created`/`modified` are ignored."""

    @rule(who=WHO, pick=st.integers(0, 1000), shift=st.sampled_from([-1, 0, 1]), order=st.sampled_from(TOKEN_ORDERS))
    def filtered_lists(self, who: str, pick: int, shift: int, order: str) -> None:
        """Every filter once, with values taken from one listed thread (`pick`) moved by `shift`."""
        everything = self.all_pages("/api/chat-threads/", who, {"page_size": 300})
        if not everything:
            return
        sample = everything[pick % len(everything)]
        for kind in FILTERS:
            name, value, keep = thread_filter(kind, sample, shift)
            listed = self.all_pages("/api/chat-threads/", who, {name: value, "o": order, "page_size": 300})
            wanted = {t["uuid"] for t in everything if keep(t)}
            uuids = [t["uuid"] for t in listed]
            if len(uuids) != len(set(uuids)) or set(uuids) != wanted:
                message = f"{name}={value} listed {len(uuids)}, expected {len(wanted)}"
                raise self.fail(f"behaviour.filter_{kind}", message)
            self.check_order(listed, order)


STATS_FILTERS = (None, "has_feedback", "created_after", "total_tokens_min")


class StatsRules(ChatMachine):
    """Stats over the same filters as the list: totals are what the target's own list and
    messages show, threads made before the run included (the rows of the threads the model
    knows are held to the model by `check_thread`, so the feedback counts are the model's too)."""

    @rule(who=WHO, kind=st.sampled_from(STATS_FILTERS), shift=st.sampled_from([-1, 0, 1]))
    def stats(self, who: str, kind: str | None, shift: int) -> None:
        everything = self.all_pages("/api/chat-threads/", who, {"page_size": 300})
        params: dict[str, str] = {}
        if kind is not None and everything:
            name, value, _ = thread_filter(kind, everything[0], shift)
            params[name] = value
        listed = self.all_pages("/api/chat-threads/", who, {**params, "page_size": 300})
        response = self.call("GET", "/api/chat-threads/stats/", who, params=params)
        self.expect_status(response, 200, "behaviour.stats_status")
        stats = response.json()
        wanted = self.expected_stats(who, listed)
        for key, value in wanted.items():
            if stats.get(key) != value:
                raise self.fail(f"behaviour.stats_{key}", f"{key} is {stats.get(key)}, the lists say {value}")
        self.check_rate(stats)

    def expected_stats(self, who: str, listed: list[dict[str, Any]]) -> dict[str, Any]:
        """The totals the listed threads and their messages (history included) add up to."""
        response = self.call("GET", "/api/chat-messages/", who, params={"include_history": "true"})
        self.expect_status(response, 200, "behaviour.messages_list")
        uuids = {t["uuid"] for t in listed}
        rows = [row for row in response.json() if row.get("thread") in uuids]
        input_total = sum(_token_value(t, "input_tokens") or 0 for t in listed)
        output_total = sum(_token_value(t, "output_tokens") or 0 for t in listed)
        return {
            "threads_total": len(listed),
            "sessions_total": len({t["chat_session"] for t in listed}),
            "users_total": 1 if listed else 0,  # a regular user's stats cover own threads only
            "messages_total": len(rows),
            "input_tokens_total": input_total,
            "output_tokens_total": output_total,
            "total_tokens": input_total + output_total,
            "flagged_total": sum(1 for t in listed if t.get("is_flagged")),
            "feedback_positive": sum(1 for row in rows if row.get("feedback_score") is True),
            "feedback_negative": sum(1 for row in rows if row.get("feedback_score") is False),
        }

    def check_rate(self, stats: dict[str, Any]) -> None:
        positive, negative = stats["feedback_positive"], stats["feedback_negative"]
        rate = stats.get("satisfaction_rate")
        if positive + negative == 0:
            if rate is not None:
                raise self.fail("behaviour.stats_satisfaction_rate", f"satisfaction_rate {rate} without feedback")
            return
        if not isinstance(rate, int | float) or abs(rate - positive / (positive + negative)) > RATE_TOLERANCE:
            raise self.fail(
                "behaviour.stats_satisfaction_rate", f"satisfaction_rate {rate} for {positive} up, {negative} down"
            )


def rule_sets(traits: ApiTraits) -> list[type[ChatMachine]]:
    """The rule sets the traits call for, in a fixed order (the examples depend on it)."""
    chosen: list[type[ChatMachine]] = [ClientNamingRules if traits.thread_naming == "client" else ServerNamingRules]
    switched = (
        (traits.cancel, CancelRules),
        (traits.feedback, FeedbackRules),
        (traits.stats, StatsRules),
        (traits.thread_filters == "bounds", BoundFilterRules),
    )
    return chosen + [rules for wanted, rules in switched if wanted]


def run_behaviour(
    target: Target,
    checker: StreamChecker,
    budget: Budget,
    *,
    traits: ApiTraits,
    max_examples: int = 25,
    steps: int = 12,
    seed: int | None = None,
    on_example: Callable[[], None] = lambda: None,
    log: list[Step] | None = None,
) -> None:
    """Run the machine the traits call for; raises the shrunk ContractViolation on failure.

    `on_example` is called as each example starts; `log` receives the requests of the
    current example (the steps of an error that is not a ContractViolation).

    Without a seed the run is derandomized (the same examples every time, as CI wants);
    with one, hypothesis draws from that seed.
    """
    import hypothesis.core

    first: list[ContractViolation] = []
    attributes = {
        "first_violation": first,
        "traits": traits,
        "target": target,
        "checker": checker,
        "budget": budget,
        "log_sink": [] if log is None else log,
        "on_example": staticmethod(on_example),
    }
    machine = type("TargetChatMachine", tuple(rule_sets(traits)), attributes)
    config = settings(
        max_examples=max_examples,
        stateful_step_count=steps,
        deadline=None,
        derandomize=seed is None,
        database=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.generate, Phase.shrink],
        report_multiple_bugs=False,
        print_blob=False,
    )
    previous = hypothesis.core.global_force_seed
    hypothesis.core.global_force_seed = seed  # type: ignore[assignment]  # what --hypothesis-seed does
    try:
        run_state_machine_as_test(machine, settings=config)
    except FlakyStrategyDefinition as error:
        if not first:
            raise
        # The replay of the failing example drew differently (threads made meanwhile change what
        # the machine starts from): the violation itself is lost in hypothesis's error.
        violation = first[0]
        note = " (not shrunk: its replay took another course, e.g. with threads the run made meanwhile)"
        raise ContractViolation(violation.check, violation.message + note, violation.steps) from error
    finally:
        hypothesis.core.global_force_seed = previous


__all__ = ["rule_sets", "run_behaviour", "thread_filter"]
