"""Refuse reply-script regexes that can backtrack for minutes.

Python's `re` has no time limit, and a matcher runs on the event loop for every stream: one
pattern like `^(a+)+$` against 31 characters took 57 s and stalled every user of the mock.
The catastrophic cases are a repeated group whose body can match the same text in more than
one way: it holds a quantifier of its own (`(a+)+`, `(\\w*)*`) or an alternation
(`(a|aa)+`). Those are refused at load with the reason; everything else (groups that are not
repeated, `?` on a group, classes, anchors) is accepted. A conservative rule, on purpose:
a script needs no such pattern to match a prompt.
"""

from __future__ import annotations

from dataclasses import dataclass

_QUANTIFIERS = frozenset("*+{")


@dataclass
class _Group:
    ambiguous: bool = False  # its body holds a quantifier or an alternation


def backtracking_risk(pattern: str) -> str | None:
    """Why `pattern` risks catastrophic backtracking, or None when it does not."""
    stack: list[_Group] = [_Group()]
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\":
            i += 2
            continue
        if char == "[":
            i = _class_end(pattern, i)
            continue
        if char == "(":
            stack.append(_Group())
        elif char == "|":
            stack[-1].ambiguous = True
        elif char == ")" and len(stack) > 1:
            group = stack.pop()
            if group.ambiguous and _repeats(pattern, i + 1):
                return f"a repeated group holds a quantifier or an alternation, near {pattern[: i + 2]!r}"
            stack[-1].ambiguous |= group.ambiguous
        elif char in _QUANTIFIERS and _repeats(pattern, i):
            stack[-1].ambiguous = True
        i += 1
    return None


def _repeats(pattern: str, at: int) -> bool:
    """A quantifier at `at` that allows more than one repetition (`*`, `+`, `{m,}`, `{m,n}` with n > 1)."""
    if at >= len(pattern):
        return False
    if pattern[at] in "*+":
        return True
    if pattern[at] != "{":
        return False
    end = pattern.find("}", at)
    if end < 0:
        return False  # a literal brace
    low, _, high = pattern[at + 1 : end].partition(",")
    if not low.strip().isdigit() and low.strip():
        return False  # not a quantifier: `re` reads it as literal text
    if "," not in pattern[at + 1 : end]:
        return low.strip().isdigit() and int(low) > 1
    return not high.strip() or (high.strip().isdigit() and int(high) > 1)


def _class_end(pattern: str, start: int) -> int:
    """The index after a character class `[...]` (a `]` first in the class is a literal)."""
    i = start + 1
    if i < len(pattern) and pattern[i] == "^":
        i += 1
    if i < len(pattern) and pattern[i] == "]":
        i += 1
    while i < len(pattern) and pattern[i] != "]":
        i += 2 if pattern[i] == "\\" else 1
    return i + 1
