"""Read reply-script YAML, with the file and line of every refusal.

Structure and matchers are checked here; `ScriptedEngine.check` then dry-runs each
script and validates every record it would produce against the spec's record schema.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from mockserver.engine.faults import FaultSyntaxError, faults_from_mapping
from mockserver.engine.pacing import Timing
from mockserver.engine.scripts.model import Chunk, InputMatcher, LiteralStep, Match, Script
from mockserver.engine.scripts.regex_safety import backtracking_risk
from mockserver.errors import ConfigurationError
from mockserver.resources import SCRIPT_DIR

DEFAULT_SCRIPT_DIR = SCRIPT_DIR
NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
MODES = {"message", "reload", "edit", "title"}
CHUNKINGS = {"word", "token", "none"}
SCRIPT_KEYS = {"name", "description", "match", "reply", "records", "faults"}
REPLY_KEYS = {"text", "chunks", "chunking", "timing", "after_tool"}
TIMING_KEYS = {"first_chunk_ms", "inter_chunk_ms", "tokens_per_second", "jitter_ms", "seed"}
# Bounds of one script text, checked before anything is built: aliases let a few hundred bytes
# stand for millions of nodes ("billion laughs"), so the count is of nodes with aliases expanded.
MAX_SCRIPT_BYTES = 1024 * 1024
MAX_EXPANDED_NODES = 200_000
MAX_DEPTH = 50  # nesting levels; a script needs fewer than ten, and building deeper ones recurses


class ScriptError(ConfigurationError):
    """A script that cannot be used: `file:line: reason`."""

    def __init__(self, source: str, line: int | None, reason: str):
        self.source, self.line, self.reason = source, line, reason
        super().__init__(f"{source}:{line}: {reason}" if line else f"{source}: {reason}")


class _Node(dict):
    """A mapping that remembers the line it started on (1-based)."""

    line: int = 0


class _LineLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    pass


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> _Node:
    mapping = _Node(loader.construct_mapping(node, deep=True))
    mapping.line = node.start_mark.line + 1
    return mapping


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


class _Reader:
    """Turns one file's parsed YAML into scripts; every error names file and line."""

    def __init__(self, source: str):
        self.source = source

    def fail(self, node: Any, reason: str) -> ScriptError:
        return ScriptError(self.source, getattr(node, "line", None), reason)

    def keys(self, node: Any, allowed: set[str], what: str) -> None:
        if not isinstance(node, dict):
            raise self.fail(node, f"{what} must be a mapping")
        unknown = set(node) - allowed
        if unknown:
            raise self.fail(node, f"unknown key(s) in {what}: {', '.join(sorted(map(str, unknown)))}")

    def document(self, document: Any) -> list[Script]:
        self.keys(document, {"scripts"}, "the top level")
        entries = document.get("scripts")
        if not isinstance(entries, list):
            raise self.fail(document, "'scripts' must be a list")
        return [self.script(entry) for entry in entries]

    def script(self, node: Any) -> Script:
        self.keys(node, SCRIPT_KEYS, "a script")
        name = node.get("name")
        if not isinstance(name, str) or not NAME.match(name):
            raise self.fail(node, f"script name must match {NAME.pattern}, got {name!r}")
        if ("reply" in node) == ("records" in node):
            raise self.fail(node, f"script {name!r} needs exactly one of 'reply' or 'records'")
        try:
            faults = faults_from_mapping(node.get("faults"))
        except FaultSyntaxError as exc:
            raise self.fail(node.get("faults", node), f"script {name!r}: {exc}") from None
        common: dict[str, Any] = {
            "name": name,
            "file": self.source,
            "line": node.line,
            "match": self.match(node["match"], name) if "match" in node else None,
            "faults": faults,
            "description": str(node.get("description", "")),
        }
        if "records" in node:
            return Script(**common, records=self.literal(node["records"], name))
        return Script(**common, **self.reply(node["reply"], name))

    def match(self, node: Any, name: str) -> Match:
        self.keys(node, {"input", "turn", "mode"}, f"match of {name!r}")
        inputs = node.get("input")
        matchers = tuple(
            self.input(i, name) for i in (inputs if isinstance(inputs, list) else [inputs] if inputs else [])
        )
        turn_min = turn_max = None
        turn = node.get("turn")
        if isinstance(turn, int) and not isinstance(turn, bool):
            turn_min = turn_max = turn
        elif isinstance(turn, dict):
            self.keys(turn, {"min", "max"}, f"turn of {name!r}")
            turn_min, turn_max = turn.get("min"), turn.get("max")
        elif turn is not None:
            raise self.fail(node, f"turn of {name!r} must be an integer or {{min, max}}")
        for bound in (turn_min, turn_max):
            if bound is not None and (not isinstance(bound, int) or isinstance(bound, bool) or bound < 1):
                raise self.fail(node, f"turn bounds of {name!r} must be integers >= 1")
        modes = node.get("mode")
        mode_set = set(modes if isinstance(modes, list) else [modes] if modes else [])
        if mode_set - MODES:
            raise self.fail(node, f"mode of {name!r} must be among {sorted(MODES)}, got {sorted(mode_set - MODES)}")
        return Match(matchers, turn_min, turn_max, frozenset(mode_set))  # type: ignore[arg-type]

    def input(self, node: Any, name: str) -> InputMatcher:
        if isinstance(node, str):
            return InputMatcher("contains", node, ignore_case=True)
        self.keys(node, {"exact", "contains", "regex", "ignore_case"}, f"input matcher of {name!r}")
        kinds = [k for k in ("exact", "contains", "regex") if k in node]
        if len(kinds) != 1 or not isinstance(node[kinds[0]], str):
            raise self.fail(node, f"input matcher of {name!r} needs one string of exact, contains or regex")
        kind, value = kinds[0], node[kinds[0]]
        ignore_case = bool(node.get("ignore_case", False))
        pattern = None
        if kind == "regex":
            try:
                pattern = re.compile(value, re.IGNORECASE if ignore_case else 0)
            except re.error as exc:
                raise self.fail(node, f"bad regex in {name!r}: {exc}") from None
            risk = backtracking_risk(value)
            if risk:
                raise self.fail(node, f"regex of {name!r} could take minutes on some inputs: {risk}")
        return InputMatcher(kind, value, ignore_case, pattern)

    def reply(self, node: Any, name: str) -> dict[str, Any]:
        self.keys(node, REPLY_KEYS, f"reply of {name!r}")
        if ("text" in node) == ("chunks" in node):
            raise self.fail(node, f"reply of {name!r} needs exactly one of 'text' or 'chunks'")
        result: dict[str, Any] = {"timing": self.timing(node.get("timing", {}), name)}
        if "text" in node:
            if not isinstance(node["text"], str):
                raise self.fail(node, f"text of {name!r} must be a string")
            result["text"] = node["text"]
            result["chunking"] = self.chunking(node, name)
        else:
            result["chunks"] = self.chunks(node, name)
        if "after_tool" in node:
            if not isinstance(node["after_tool"], str):
                raise self.fail(node, f"after_tool of {name!r} must be a string")
            result["after_tool"] = node["after_tool"]
        return result

    def chunking(self, node: dict[str, Any], name: str) -> str | int:
        rule = node.get("chunking", "token")
        if isinstance(rule, dict):
            self.keys(rule, {"size"}, f"chunking of {name!r}")
            rule = rule.get("size")
            if not isinstance(rule, int) or isinstance(rule, bool) or rule < 1:
                raise self.fail(node, f"chunking size of {name!r} must be an integer >= 1")
            return rule
        if rule not in CHUNKINGS:
            raise self.fail(node, f"chunking of {name!r} must be word, token, none or {{size: N}}")
        return rule

    def chunks(self, node: dict[str, Any], name: str) -> tuple[Chunk, ...]:
        items = node["chunks"]
        if not isinstance(items, list):
            raise self.fail(node, f"chunks of {name!r} must be a list")
        chunks = []
        for item in items:
            if isinstance(item, str):
                chunks.append(Chunk(item))
                continue
            self.keys(item, {"text", "delay_ms"}, f"a chunk of {name!r}")
            delay = item.get("delay_ms")
            if not isinstance(item.get("text"), str) or not _non_negative(delay, optional=True):
                raise self.fail(item, f"a chunk of {name!r} needs text (string) and delay_ms >= 0")
            chunks.append(Chunk(item["text"], delay))
        return tuple(chunks)

    def timing(self, node: Any, name: str) -> Timing:
        self.keys(node, TIMING_KEYS, f"timing of {name!r}")
        for key, value in node.items():
            if not _non_negative(value) or (key == "seed" and not isinstance(value, int)):
                raise self.fail(node, f"timing {key} of {name!r} must be a number >= 0")
        return Timing(**node)

    def literal(self, node: Any, name: str) -> tuple[LiteralStep, ...]:
        if not isinstance(node, list) or not node:
            raise self.fail(node, f"records of {name!r} must be a non-empty list")
        steps = []
        for item in node:
            if not isinstance(item, dict):
                raise self.fail(node, f"each record of {name!r} must be a mapping")
            if set(item) == {"delay_ms"}:
                if not _non_negative(item["delay_ms"]):
                    raise self.fail(item, f"delay_ms of {name!r} must be a number >= 0")
                steps.append(LiteralStep(None, item["delay_ms"], getattr(item, "line", None)))
            else:
                steps.append(LiteralStep(_plain(item), 0.0, getattr(item, "line", None)))
        return tuple(steps)


def _non_negative(value: Any, optional: bool = False) -> bool:
    if value is None:
        return optional
    return isinstance(value, int | float) and not isinstance(value, bool) and value >= 0


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def load_scripts_text(text: str, source: str = "<scripts>") -> list[Script]:
    """Parse and check one script file; oversized or alias-bomb documents are refused before being built."""
    size = len(text.encode("utf-8", errors="surrogatepass"))
    if size > MAX_SCRIPT_BYTES:
        raise ScriptError(source, None, f"script text is {size} bytes; at most {MAX_SCRIPT_BYTES} are accepted")
    loader = _LineLoader(text)
    try:
        node = loader.get_single_node()
        if node is not None:
            _check_expanded_size(node, source)
        document = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise ScriptError(source, mark.line + 1 if mark else None, f"invalid YAML: {exc}") from None
    finally:
        loader.dispose()
    return _Reader(source).document(document)


def _check_expanded_size(root: yaml.Node, source: str) -> None:
    """Refuse a node graph that expands to more than MAX_EXPANDED_NODES nodes, nests deeper than
    MAX_DEPTH, or refers to itself.

    Iterative post-order walk with one size and height per distinct node: linear in the
    document's own size however far its aliases would expand.
    """
    sizes: dict[int, int] = {}
    heights: dict[int, int] = {}
    on_path: set[int] = set()  # nodes whose subtree is being counted: meeting one again is a cycle
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        children = _children(node)
        if children_done:
            sizes[key] = 1 + sum(sizes[id(child)] for child in children)
            heights[key] = 1 + max((heights[id(child)] for child in children), default=0)
            on_path.discard(key)
            line = node.start_mark.line + 1
            if sizes[key] > MAX_EXPANDED_NODES:
                reason = f"the document expands to more than {MAX_EXPANDED_NODES} nodes (aliases counted as expanded)"
                raise ScriptError(source, line, reason)
            if heights[key] > MAX_DEPTH:
                raise ScriptError(source, line, f"the document nests deeper than {MAX_DEPTH} levels")
            continue
        if key in sizes:
            continue
        if key in on_path:
            raise ScriptError(source, node.start_mark.line + 1, "a recursive alias (a node that contains itself)")
        on_path.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in children if id(child) not in sizes)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def load_script_dir(path: Path = DEFAULT_SCRIPT_DIR) -> list[Script]:
    """Every `*.yaml` of a directory in name order (or one file); names must be unique."""
    files = sorted(path.glob("*.yaml")) if path.is_dir() else [path]
    if not files:
        raise ScriptError(str(path), None, "no *.yaml script files found")
    scripts: list[Script] = []
    for file in files:
        try:
            text = file.read_text(encoding="utf-8")
        except OSError as exc:
            raise ScriptError(str(file), None, f"cannot read: {exc.strerror}") from None
        scripts.extend(load_scripts_text(text, str(file)))
    check_unique(scripts)
    return scripts


def require_catch_all(scripts: list[Script], source: str) -> None:
    """Without a catch-all a request that no matcher fits gets an empty reply: refused unless asked for."""
    if any(s.match is not None and s.match.is_catch_all for s in scripts):
        return
    raise ScriptError(
        source,
        None,
        "no catch-all script (one with `match: {}`), so a request that no script matches would get an "
        "empty reply; add one last, or allow this explicitly (serve --allow-no-catch-all, "
        "PUT /__mock__/scripts?allow_no_catch_all=true)",
    )


def check_unique(scripts: list[Script]) -> None:
    """Names select scenarios, so two scripts may not share one."""
    seen: dict[str, Script] = {}
    for script in scripts:
        first = seen.setdefault(script.name, script)
        if first is not script:
            raise ScriptError(
                script.file, script.line, f"duplicate script name {script.name!r} (first at {first.where})"
            )
