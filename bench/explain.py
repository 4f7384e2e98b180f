"""Explain steps layer by layer: each framework's configuration in an explaining child (``bench.explainer``),
supervised like a worker, its ledger gathered into one ``Explanation`` per model and setting, ``explain.json``
written after every child.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

from bench import ledger as ld
from bench.config import Config
from bench.engines import get_engine
from bench.explainer import ExplainOptions
from bench.files import atomic_write_text
from bench.protocol import Progress
from bench.runner import Observer
from bench.supervisor import ChildReports, Interrupted, Launch, supervise

EXPLAIN_FILE_NAME = "explain.json"
EXPLAINER_PROGRAM: tuple[str, ...] = ("-m", "bench.explainer")


def _setting(config: Config) -> tuple:
    """What the frameworks of one explanation share: everything but the framework."""
    return config.model, config.mode, config.device, config.batch_size, config.precision


def explain_configs(configs: Sequence[Config], out_path: Path | None, options: ExplainOptions, *,
                    timeout_s: float, observer: Observer | None = None) -> list[ld.Explanation]:
    """Explain every configuration, each in a child process of its own; ``out_path`` (``explain.json``) is rewritten
    after every child, so an interrupted explanation keeps what was measured. Configurations that differ only in
    framework make one explanation. Raises ``Interrupted`` after saving when the run is stopped."""
    explanations: dict[tuple, ld.Explanation] = {}
    for index, config in enumerate(configs):
        entry = explanations.setdefault(_setting(config), ld.Explanation(
            config.model, config.mode, config.device, config.batch_size, config.precision, [], []))
        if observer is not None:
            observer.on_start(index, config)
        if refusal := get_engine(config.framework).explain_refusal(config):
            entry.reasons[config.framework] = refusal
            if observer is not None and hasattr(observer, "on_finished"):
                observer.on_finished(index, "not explained", True)
            continue
        report, ending = _explain_one(config, options, timeout_s, observer, index)
        if report is not None and report.explained is not None:
            entry.steps.append(ld.StepLedger.from_dict(report.explained["step"]))
            entry.layers += [ld.LayerTime.from_dict(row) for row in report.explained["layers"]]
        else:
            entry.reasons[config.framework] = _why_not(config, report, ending, timeout_s)
        if out_path is not None:
            write_explanations(out_path, list(explanations.values()))
        if observer is not None and hasattr(observer, "on_finished"):
            observer.on_finished(index, "explained" if config.framework not in entry.reasons else "not explained",
                                 config.framework in entry.reasons)
        if ending.interrupted is not None:
            raise Interrupted(ending.interrupted.signal_number)
    return list(explanations.values())


def _explain_one(config: Config, options: ExplainOptions, timeout_s: float, observer: Observer | None, index: int):
    """One configuration in an explaining child: what it said, and how it ended."""
    reports = ChildReports()

    def on_message(message) -> None:
        reports.record(message)
        if observer is not None and isinstance(message, Progress):
            observer.on_progress(index, message.phase, message.done, message.total)

    launch = Launch((sys.executable, *EXPLAINER_PROGRAM, json.dumps(config.to_dict()), json.dumps(options.to_dict())))
    ending = supervise([launch], timeout_s, on_message)
    return reports.by_rank.get(0), ending


def _why_not(config: Config, report, ending, timeout_s: float) -> str:
    """Why a framework has no ledger, in one line: its own outcome's reason, or how its process ended."""
    if report is not None and report.outcome is not None and report.outcome.reason:
        reason = report.outcome.reason
        return reason if report.outcome.status == "skipped" else f"{config.framework}: {reason}"
    if ending.interrupted is not None:
        return f"{config.framework}: interrupted by {ending.interrupted.signal_name}"
    if ending.timed_out:
        return f"{config.framework}: timed out after {timeout_s:g} s (--timeout)"
    return f"{config.framework}: explainer {ending.reason(0)}"


def write_explanations(path: Path, explanations: Sequence[ld.Explanation]) -> None:
    atomic_write_text(Path(path), json.dumps({"explanations": [entry.to_dict() for entry in explanations]},
                                             indent=1) + "\n")


def read_explanations(path: Path) -> list[ld.Explanation]:
    """The explanations of an ``explain.json`` (or of the run folder holding it)."""
    path = Path(path)
    path = path / EXPLAIN_FILE_NAME if path.is_dir() else path
    return [ld.Explanation.from_dict(entry) for entry in json.loads(path.read_text())["explanations"]]
