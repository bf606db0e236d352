"""Reporters: they only read a `Report` (a readable summary, JUnit XML and JSON for CI)."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

from mockserver.contract.findings import CheckResult
from mockserver.contract.runner import EXIT_INCOMPLETE, PARTS, Report

MARKS = {"passed": "PASS", "failed": "FAIL", "skipped": "SKIP"}
SKIP_LABELS = {"budget": "budget", "not_applicable": "not applicable", "not_checked": "not checked"}
PROBE_NOTE = (
    "schemathesis first probes the target with a NUL byte in a header, which no HTTP server can read "
    "(uvicorn logs it as 'Invalid HTTP request received'); it then generates no such headers"
)
REPORT_FORMAT = 1  # version of the JSON report's shape (documented in the README)


def _mark(result: CheckResult) -> str:
    if result.verdict == "skipped" and result.skip is not None:
        return f"SKIP [{SKIP_LABELS[result.skip]}]"
    return MARKS[result.verdict]


def counts(report: Report) -> dict[str, int]:
    """passed, failed, skipped (applies, but not run) and not_applicable: four disjoint counts."""
    tally = Counter(r.verdict for r in report.results)
    not_applicable = sum(r.verdict == "skipped" and not r.incomplete for r in report.results)
    return {
        "passed": tally["passed"],
        "failed": tally["failed"],
        "skipped": tally["skipped"] - not_applicable,
        "not_applicable": not_applicable,
    }


def summary(report: Report) -> str:
    lines: list[str] = []
    for part in PARTS:
        results = [r for r in report.results if r.part == part]
        if not results:
            continue
        lines.append(f"{part}:")
        for result in results:
            rule = f" [{result.rule}]" if result.failed and result.rule and result.rule != result.check else ""
            note = f" - {result.message}" if result.message else ""
            lines.append(f"  {_mark(result)} {result.check}{rule}{note}")
            if result.failed and result.steps:
                lines.append("       reproduce with:")
                lines.extend(f"         {n}. {step.render()}" for n, step in enumerate(result.steps, 1))
        if part == "schema":
            lines.append(f"  note: {PROBE_NOTE}")
    lines.append(_budget_line(report))
    tally = counts(report)
    lines.append(
        f"{tally['passed']} passed, {tally['failed']} failed, {tally['skipped']} skipped although they apply, "
        f"{tally['not_applicable']} not applicable to this target (threads of the suite archived: {report.archived})"
    )
    lines.append(_verdict(report))
    return "\n".join(lines)


def _budget_line(report: Report) -> str:
    shares = ", ".join(f"{part} {b.used}/{b.granted}" for part, b in report.budget.items())
    left_out = sum(b.left_out for b in report.budget.values())
    line = f"streams (--max-streams {report.max_streams}), used/planned per part: {shares or 'none'}"
    return line + (f"; {left_out} stream cases or steps left out for budget" if left_out else "")


def _verdict(report: Report) -> str:
    if report.outcome == "violated":
        return "verdict: CONTRACT VIOLATED"
    if report.outcome == "incomplete":
        names = ", ".join(f"{r.check} ({SKIP_LABELS[r.skip or 'not_checked']})" for r in report.incomplete)
        return (
            f"verdict: INCOMPLETE - no violation found, but {len(report.incomplete)} checks that apply were not "
            f"run: {names} (exit code {EXIT_INCOMPLETE}; --allow-skips accepts this)"
        )
    return "verdict: the target honours the contract (every check that applies to it ran and passed)"


def _system_out(result: CheckResult) -> str:
    lines = [f"{_mark(result)}: {result.message}" if result.message else _mark(result)]
    lines.extend(f"{key} = {value}" for key, value in result.figures.items())
    return "\n".join(lines)


def write_junit(report: Report, path: Path) -> None:
    """One testcase per check under its stable name, with `time`; reasons and figures in system-out."""
    suites = ET.Element("testsuites", name="waldur-chat contract", time=f"{report.seconds:.3f}")
    for part in PARTS:
        results = [r for r in report.results if r.part == part]
        if not results:
            continue
        suite = ET.SubElement(
            suites,
            "testsuite",
            name=part,
            tests=str(len(results)),
            failures=str(sum(r.failed for r in results)),
            errors="0",
            skipped=str(sum(r.verdict == "skipped" for r in results)),
            time=f"{sum(r.duration for r in results):.3f}",
        )
        for result in results:
            case = ET.SubElement(
                suite, "testcase", classname=f"contract.{part}", name=result.check, time=f"{result.duration:.3f}"
            )
            if result.failed:
                rule = f"[{result.rule}] " if result.rule else ""
                failure = ET.SubElement(case, "failure", message=(rule + result.message)[:1000], type=result.diagnosis)
                failure.text = "\n".join(step.render() for step in result.steps)
            elif result.verdict == "skipped":
                ET.SubElement(case, "skipped", message=f"{SKIP_LABELS[result.skip or 'not_checked']}: {result.message}")
            ET.SubElement(case, "system-out").text = _system_out(result)
    ET.ElementTree(suites).write(path, encoding="utf-8", xml_declaration=True)


def as_json(report: Report, exit_code: int) -> dict[str, Any]:
    """The report for machines; its shape is documented in the README (`--report-json`)."""
    return {
        "format": REPORT_FORMAT,
        "outcome": report.outcome,
        "exit_code": exit_code,
        "seconds": round(report.seconds, 3),
        "counts": counts(report),
        "budget": {
            "max_streams": report.max_streams,
            "parts": {part: asdict(share) for part, share in report.budget.items()},
        },
        "archived_threads": report.archived,
        "checks": [_check_json(r) for r in report.results],
    }


def _check_json(result: CheckResult) -> dict[str, Any]:
    return {
        "part": result.part,
        "name": result.check,
        "verdict": result.verdict,
        "skip": result.skip,
        "rule": result.rule or None,
        "message": result.message,
        "duration": round(result.duration, 3),
        "steps": [asdict(step) for step in result.steps],
        "figures": result.figures,
    }


def write_json(report: Report, path: Path, exit_code: int) -> None:
    path.write_text(json.dumps(as_json(report, exit_code), indent=2, ensure_ascii=False, default=str) + "\n")
