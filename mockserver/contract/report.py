"""Reporters: they only read a `Report` (a readable summary, and JUnit XML for CI)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from xml.etree import ElementTree as ET

from mockserver.contract.runner import PARTS, Report

MARKS = {"passed": "PASS", "failed": "FAIL", "skipped": "SKIP"}


def summary(report: Report) -> str:
    lines: list[str] = []
    for part in PARTS:
        results = [r for r in report.results if r.part == part]
        if not results:
            continue
        lines.append(f"{part}:")
        for result in results:
            note = f" - {result.message}" if result.message else ""
            lines.append(f"  {MARKS[result.verdict]} {result.check}{note}")
            if result.failed and result.steps:
                lines.append("       reproduce with:")
                lines.extend(f"         {n}. {step.render()}" for n, step in enumerate(result.steps, 1))
    counts = Counter(r.verdict for r in report.results)
    lines.append(
        f"{counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped"
        f" (threads of the suite archived: {report.archived})"
    )
    lines.append("verdict: the target honours the contract" if report.ok else "verdict: CONTRACT VIOLATED")
    return "\n".join(lines)


def write_junit(report: Report, path: Path) -> None:
    suites = ET.Element("testsuites", name="waldur-chat contract")
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
            skipped=str(sum(r.verdict == "skipped" for r in results)),
        )
        for result in results:
            case = ET.SubElement(suite, "testcase", classname=f"contract.{part}", name=result.check)
            if result.failed:
                failure = ET.SubElement(case, "failure", message=result.message[:500])
                failure.text = "\n".join(step.render() for step in result.steps)
            elif result.verdict == "skipped":
                ET.SubElement(case, "skipped", message=result.message[:500])
    ET.ElementTree(suites).write(path, encoding="utf-8", xml_declaration=True)
