"""`sweeper report`: a sweep compared as the study compared methods, written as Markdown, HTML and PNGs.

Usage::

    written = write_report(tracker, find_sweep(tracker), Path("report"))   # and logged under report/
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sweeper.report.analysis import Decision, decide
from sweeper.report.budget import stop_note, stopped_of
from sweeper.report.document import Image
from sweeper.report.sections import build_document, missing_text
from sweeper.report.verdict import log_verdict, verdict
from sweeper.tracking.client import Tracker
from sweeper.recorded.notes import write_sweep_note
from sweeper.tracking.schema import REPORT_FOLDER, REPORT_HTML
from sweeper.recorded.sweeps import SweepRecord, load_sweep

__all__ = ["WrittenReport", "write_report"]


@dataclass(frozen=True)
class WrittenReport:
    """The files a report wrote, the parent run they were logged to (None when not logged), and what it lacks (a
    line saying which trials have no run, when some were deleted; else None)."""

    files: list[Path]
    logged_to: str | None
    partial: str | None = None


def write_report(tracker: Tracker, sweep: SweepRecord, out: Path, log: bool = True) -> WrittenReport:
    """Write report.md, report.html and the figures to `out`; log them to the sweep's parent run under report/, the
    verdict as `verdict.json`, and put the verdict, the decision and a link to the report in the run's description."""
    out.mkdir(parents=True, exist_ok=True)
    details = load_sweep(tracker, sweep)
    decision = decide(details)
    found = verdict(details)
    document = build_document(details, out, decision, found)
    (out / "report.md").write_text(document.markdown(), encoding="utf-8")
    (out / REPORT_HTML).write_text(document.html(), encoding="utf-8")
    images = [block.path for section in document.sections for block in section.blocks if isinstance(block, Image)]
    files = [out / "report.md", out / REPORT_HTML, *images]
    if log:
        for path in files:
            tracker.log_file(sweep.run_id, path, REPORT_FOLDER)
        log_verdict(tracker, sweep, found)
        write_sweep_note(tracker, sweep, decision_lines(decision), stop_note(found.text, stopped_of(details.tags)))
    return WrittenReport(files, sweep.run_id if log else None, missing_text(details) if details.missing() else None)


def decision_lines(decision: Decision) -> list[str]:
    """The decision in the sweep's description: one line per pair (the verdict has a place of its own)."""
    return [pair.sentence for pair in decision.pairs]
