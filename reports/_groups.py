"""How every view groups results: by model and mode, then by the setting in which frameworks are compared."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from bench.config import Config
from bench.record import Result, Run
from reports import _format


@dataclass(frozen=True)
class LabelledResult:
    """A result and the label of the run it came from, for views that merge several run files."""

    run: str
    result: Result

    @property
    def median_ms(self) -> float:
        return self.result.derived.median_ms


def run_labels(runs: Sequence[Run]) -> list[str]:
    """A short, distinct name per run: its folder (or file stem), the full path where those collide."""
    short = [_short_label(run, index) for index, run in enumerate(runs)]
    if len(set(short)) == len(short):
        return short
    return [str(run.path) if run.path else f"run {index + 1}" for index, run in enumerate(runs)]


def _short_label(run: Run, index: int) -> str:
    if run.path is None:
        return f"run {index + 1}"
    return (run.path.parent.name or str(run.path)) if run.path.name == "results.json" else run.path.stem


def labelled_results(runs: Sequence[Run]) -> list[LabelledResult]:
    labels = run_labels(runs)
    return [LabelledResult(label, result) for label, run in zip(labels, runs, strict=True) for result in run.results]


def setting(entry: LabelledResult) -> tuple:
    """What must be equal for two results to be compared as frameworks doing the same work on the same machine."""
    config = entry.result.config
    # 0 replicas: one plain process, kept apart from (and sorted before) one data-parallel replica.
    return entry.run, config.device, config.precision, config.batch_size, config.replicas or 0, config.nodes


def sort_key(entry: LabelledResult) -> tuple:
    config = entry.result.config
    return (*setting(entry), config.framework, config.compile, config.channels_last, config.data,
            config.autotune, config.workers if config.workers is not None else -1)


def by_model_and_mode(entries: Iterable[LabelledResult]) -> dict[tuple[str, str], list[LabelledResult]]:
    """Groups in the order models and modes first appear; inside a group, each setting's results together."""
    groups: dict[tuple[str, str], list[LabelledResult]] = {}
    for entry in entries:
        groups.setdefault((entry.result.config.model, entry.result.config.mode), []).append(entry)
    return {key: sorted(group, key=sort_key) for key, group in groups.items()}


def time_vs_fastest(group: Sequence[LabelledResult]) -> list[float]:
    """Each median over the fastest median of its setting: 1.0 for the fastest, 1.5 for one taking 50% longer."""
    fastest: dict[tuple, float] = {}
    for entry in group:
        fastest[setting(entry)] = min(entry.median_ms, fastest.get(setting(entry), float("inf")))
    return [entry.median_ms / fastest[setting(entry)] for entry in group]


def series_name(entry: LabelledResult, with_run: bool) -> str:
    """framework, then whatever else sets this series apart, for legends and column headers."""
    config = entry.result.config
    parts = [config.framework, config.device, config.precision, _format.variant(config.compile, config.channels_last),
             config.input_label]
    return " ".join(part for part in ([entry.run] if with_run else []) + parts if part)


def _fields(config: Config) -> dict[str, str]:
    return {"model": config.model, "framework": config.framework, "device": config.device, "mode": config.mode,
            "batch": f"b{config.batch_size}", "precision": config.precision,
            "variant": _format.variant(config.compile, config.channels_last),
            "replicas": _format.replicas(config.replicas, config.nodes),
            "data": config.input_label}


def short_labels(configs: Sequence[Config]) -> tuple[list[str], str]:
    """A short label per configuration (only the fields that vary) and the fields they all share, as text."""
    fields = [_fields(config) for config in configs]
    if not fields:
        return [], ""
    varying = [name for name in fields[0] if len({f[name] for f in fields}) > 1]
    shared = " ".join(fields[0][name] for name in fields[0] if name not in varying and fields[0][name])
    names = [" ".join(f[name] for name in varying if f[name]) or config.model for f, config in zip(fields, configs,
                                                                                                   strict=True)]
    return names, shared
