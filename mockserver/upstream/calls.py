"""What Waldur sent its LLM, read into one `UpstreamCall`: the text scripts match on, and the rest.

Both protocols carry one user turn. LangServe gets one prompt string, built by Waldur as
a system prompt, `=== CONVERSATION HISTORY ===` with `role: content` lines and
`=== CURRENT USER MESSAGE ===` with `user: <input>`; the scripts match on that current
message (the system prompt names tools and formats, and would match everything), or on the
whole prompt when the markers are missing. OpenAI gets `messages`; scripts match on the last
user message. Waldur's title prompt makes the turn a `title` one, its health prompt is
answered `OK` without a script, its refusal prompt (blocked input) with the mock's polite
refusal, as the chat API does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from mockserver.engine.base import ReplyRequest, TurnKind
from mockserver.engine.faults import Faults

Protocol = Literal["langserve", "openai"]
TITLE_PREFIX = "Generate a very short title"
TITLE_USER_MESSAGE = "\n\nUser message: "
HEALTH_PROMPT = "Reply with exactly: OK"
HISTORY_MARK = "=== CONVERSATION HISTORY ==="
CURRENT_MARK = "=== CURRENT USER MESSAGE ==="
# Blocked input with usable history: Waldur asks for a polite refusal instead.
REFUSAL_PREFIX = "The user's latest message could not be processed."
REFUSAL_HISTORY = "Conversation history:"
ROLES = ("system", "user", "assistant", "tool")


class CallError(ValueError):
    """A request body the upstream cannot use: answered 400 (OpenAI) or 422 (LangServe)."""

    def __init__(self, message: str, param: str | None = None):
        super().__init__(message)
        self.param = param


@dataclass(frozen=True)
class UpstreamCall:
    protocol: Protocol
    text: str  # what the scripts match on
    prompt_text: str  # everything sent, for the input token count
    kind: TurnKind = "message"
    turn: int = 1
    history: tuple[tuple[str, str], ...] = ()
    tool_names: tuple[str, ...] = ()  # OpenAI function tools offered
    after_tool: bool = False  # the last message is a tool result: the model answers it
    health: bool = False
    refusal: bool = False  # Waldur's refusal prompt: the user input was blocked
    model: str = ""
    stream: bool = True
    include_usage: bool = False
    parameters: dict[str, Any] = field(default_factory=dict)

    def reply_request(self, scenario: str | None, faults: Faults, speed: float) -> ReplyRequest:
        return ReplyRequest(
            input=self.text,
            kind=self.kind,
            turn=self.turn,
            history=self.history,
            blocked=self.refusal,
            scenario=scenario,
            faults=faults,
            speed=speed,
        )


def langserve_call(body: Any) -> UpstreamCall:
    """`{"input": "<prompt>"}` (LangServe's `/stream` of a chat model)."""
    if not isinstance(body, dict) or not isinstance(body.get("input"), str):
        raise CallError("'input' is required and must be a string", "input")
    prompt = body["input"]
    if prompt.startswith(REFUSAL_PREFIX):
        return _refusal_call("langserve", prompt)
    history, current = split_prompt(prompt)
    kind, text = _title_or_message(current)
    turn = 1 + sum(1 for role, _ in history if role == "user")
    return UpstreamCall("langserve", text, prompt, kind, turn, history, health=_is_health(text))


def _refusal_call(protocol: Protocol, prompt: str, **fields: Any) -> UpstreamCall:
    _, _, history_text = prompt.partition(REFUSAL_HISTORY)
    history = _history_lines(history_text)
    turn = 1 + sum(1 for role, _ in history if role == "user")
    return UpstreamCall(protocol, prompt, prompt, "message", turn, history, refusal=True, **fields)


def split_prompt(prompt: str) -> tuple[tuple[tuple[str, str], ...], str]:
    """(history, current user message) of a Waldur prompt; the whole prompt when unmarked."""
    head, marked, current = prompt.partition(CURRENT_MARK)
    if not marked:
        return (), prompt.strip()
    current = current.strip()
    current = current[len("user:") :].strip() if current.startswith("user:") else current
    _, has_history, history_text = head.partition(HISTORY_MARK)
    return (_history_lines(history_text) if has_history else ()), current


def _history_lines(text: str) -> tuple[tuple[str, str], ...]:
    """`role: content` lines; a line without a known role continues the previous message."""
    entries: list[list[str]] = []
    for line in text.strip().splitlines():
        role, sep, content = line.partition(": ")
        if sep and role in ROLES:
            entries.append([role, content])
        elif entries:
            entries[-1][1] += "\n" + line
    return tuple((role, content) for role, content in entries)


def openai_call(body: Any) -> UpstreamCall:
    """A Chat Completions request: `model`, `messages`, `stream`, `tools` and parameters."""
    if not isinstance(body, dict):
        raise CallError("The request body must be a JSON object.")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise CallError("you must provide a model parameter", "model")
    messages = _messages(body.get("messages"))
    users = [content for role, content in messages if role == "user"]
    if not users:
        raise CallError("messages must contain at least one user message", "messages")
    options = body.get("stream_options")
    stream = body.get("stream") is True
    include_usage = isinstance(options, dict) and options.get("include_usage") is True
    if users[-1].startswith(REFUSAL_PREFIX):
        return _refusal_call("openai", users[-1], model=model, stream=stream, include_usage=include_usage)
    kind, text = _title_or_message(users[-1])
    last_user = max(i for i, (role, _) in enumerate(messages) if role == "user")
    return UpstreamCall(
        "openai",
        text,
        "\n".join(content for _, content in messages),
        kind,
        turn=len(users),
        history=tuple(m for m in messages[:last_user] if m[0] in ("user", "assistant")),
        tool_names=_tool_names(body.get("tools")),
        after_tool=messages[-1][0] == "tool",
        health=_is_health(text),
        model=model,
        stream=stream,
        include_usage=include_usage,
        parameters={k: v for k, v in body.items() if k not in ("model", "messages", "tools", "stream")},
    )


def _messages(value: Any) -> list[tuple[str, str]]:
    if not isinstance(value, list) or not value:
        raise CallError("'messages' must be a non-empty array", "messages")
    messages = []
    for index, message in enumerate(value):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            raise CallError(f"messages[{index}] needs a role of {', '.join(ROLES)}", f"messages[{index}].role")
        messages.append((message["role"], _content_text(message.get("content"))))
    return messages


def _content_text(content: Any) -> str:
    """A string, or the text parts of a list of content parts; anything else counts as empty."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def _tool_names(tools: Any) -> tuple[str, ...]:
    if not isinstance(tools, list):
        return ()
    names = []
    for tool in tools:
        function = tool.get("function") if isinstance(tool, dict) else None
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            names.append(function["name"])
    return tuple(names)


def _title_or_message(text: str) -> tuple[TurnKind, str]:
    """Waldur's title prompt is a `title` turn about the user message it quotes."""
    if not text.startswith(TITLE_PREFIX):
        return "message", text
    _, quoted, message = text.partition(TITLE_USER_MESSAGE)
    return "title", message if quoted else text


def _is_health(text: str) -> bool:
    return text.strip() == HEALTH_PROMPT
