"""Faults on demand: from a script, from `X-Mock-Fault`, or globally from `/__mock__/config`.

Upstream faults happen inside the simulated LLM (an error after N chunks, a stall);
wire faults happen on the HTTP body (a slow first byte, a malformed line, a dropped
connection after N records). Later sources override earlier ones field by field:
the script's own faults, then global config, then the request header.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

DEFAULT_MALFORMED_LINE = '{"k":"markdown","c":"unterminated'


class FaultSyntaxError(ValueError):
    """A fault specification that cannot be used; the message says which part and why."""


@dataclass(frozen=True)
class Faults:
    upstream_error_after_chunks: int | None = None
    stall_after_chunks: int | None = None
    stall_seconds: float | None = None
    drop_after_records: int | None = None
    malformed_line_after_records: int | None = None
    malformed_line: str | None = None
    first_byte_delay_ms: float | None = None

    def merged(self, override: Faults) -> Faults:
        changes = {f.name: getattr(override, f.name) for f in fields(self) if getattr(override, f.name) is not None}
        return replace(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}


NO_FAULTS = Faults()
_INTEGER_FIELDS = {
    "upstream_error_after_chunks",
    "stall_after_chunks",
    "drop_after_records",
    "malformed_line_after_records",
}
# At most an hour: the bound also refuses inf and nan (a stall must end).
_NUMBER_FIELDS = {"stall_seconds": 3600, "first_byte_delay_ms": 3_600_000}
FAULT_NAMES = tuple(f.name for f in fields(Faults))


def faults_from_mapping(data: Any) -> Faults:
    """Build `Faults` from a mapping (YAML or JSON), refusing unknown names and bad values."""
    if data is None:
        return NO_FAULTS
    if not isinstance(data, dict):
        raise FaultSyntaxError("faults must be a mapping of fault name to value")
    values: dict[str, Any] = {}
    for name, value in data.items():
        if name not in FAULT_NAMES:
            raise FaultSyntaxError(f"unknown fault {name!r}; known: {', '.join(FAULT_NAMES)}")
        if value is None:
            continue
        if name in _INTEGER_FIELDS:
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise FaultSyntaxError(f"{name} must be an integer >= 0, not {value!r}")
        elif name in _NUMBER_FIELDS:
            limit = _NUMBER_FIELDS[name]
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= limit:
                raise FaultSyntaxError(f"{name} must be a number from 0 to {limit}, not {value!r}")
        elif not isinstance(value, str):
            raise FaultSyntaxError(f"{name} must be a string")
        values[name] = value
    faults = Faults(**values)
    if faults.stall_seconds is not None and faults.stall_after_chunks is None:
        faults = replace(faults, stall_after_chunks=0)
    return faults


def parse_fault_header(header: str) -> Faults:
    """`X-Mock-Fault: drop_after_records=2; stall_seconds=1.5` (`,` or `;` between items)."""
    data: dict[str, Any] = {}
    for raw_item in header.replace(";", ",").split(","):
        item = raw_item.strip()
        if not item:
            continue
        name, sep, raw = item.partition("=")
        name = name.strip().replace("-", "_")
        if not sep:
            raise FaultSyntaxError(f"expected name=value, got {item!r}")
        raw = raw.strip()
        if name in _INTEGER_FIELDS:
            try:
                data[name] = int(raw)
            except ValueError:
                raise FaultSyntaxError(f"{name} must be an integer, not {raw!r}") from None
        elif name in _NUMBER_FIELDS:
            try:
                data[name] = float(raw)
            except ValueError:
                raise FaultSyntaxError(f"{name} must be a number, not {raw!r}") from None
        else:
            data[name] = raw
    return faults_from_mapping(data)
