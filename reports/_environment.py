"""The environment a run was measured in, flattened to labelled rows for the terminal and markdown tables."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from reports import _format

# Known keys first, in the order a reader wants them, with the label each is shown under; any other key
# follows under its own name, so nothing the harness records is hidden.
_LABELS = {
    "started_at": "started",
    "finished_at": "finished",
    "host": "host",
    "os": "OS",
    "python": "Python",
    "cpu_model": "CPU",
    "cpu_cores": "CPU cores",
    "memory_bytes": "memory",
    "threads": "threads",
    "git_commit": "git commit",
    "git_dirty": "uncommitted changes",
    "command": "command",
}
_ORDER = {key: index for index, key in enumerate(_LABELS)}


def environment_rows(environment: Mapping[str, Any]) -> dict[str, str]:
    """Label -> value, nested dicts flattened ("torch cuda", "peak GFLOP/s cuda bf16")."""
    rows: dict[str, str] = {}
    for key in sorted(environment, key=lambda key: _ORDER.get(key, len(_ORDER))):
        value = environment[key]
        if key == "frameworks" and isinstance(value, Mapping):
            for framework, details in value.items():
                _flatten(rows, framework, details)
        elif key == "peaks" and isinstance(value, Mapping):
            for device, by_dtype in value.items():
                _flatten(rows, f"peak GFLOP/s {device}", by_dtype)
        elif key.endswith("_bytes") and isinstance(value, int):
            rows[_LABELS.get(key, key)] = _format.byte_size(value)
        else:
            _flatten(rows, _LABELS.get(key, key), value)
    return rows


def merged_environment_rows(environments: Sequence[Mapping[str, Any]]) -> list[tuple[str, list[str]]]:
    """One row per label found in any run, one value per run ("" where a run lacks it)."""
    per_run = [environment_rows(environment) for environment in environments]
    labels = list(dict.fromkeys(label for rows in per_run for label in rows))
    return [(label, [rows.get(label, "") for rows in per_run]) for label in labels]


def _flatten(rows: dict[str, str], label: str, value: Any) -> None:
    if isinstance(value, Mapping):
        for key, inner in value.items():
            _flatten(rows, f"{label} {key}", inner)
    else:
        rows[label] = _text(value)


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return " ".join(_text(item) for item in value)
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1e4 else f"{value:,.0f}"
    return str(value)


def environment_summary(environment: Mapping[str, Any]) -> list[str]:
    """Three lines for the end of a terminal run: the machine, the software, and where the numbers come from.

    The full environment (every setting) is in report.md and ``show --env``.
    """
    machine = [f"cpu: {environment.get('cpu_model', '?')}, {environment.get('cpu_cores', '?')} cores, "
               f"{_format.byte_size(environment.get('memory_bytes'))}, {environment.get('threads', '?')} threads"]
    for device, details in (environment.get("devices") or {}).items():
        if details.get("gpu_name"):
            memory = _format.byte_size(details.get("gpu_memory_bytes"))
            machine.append(f"{device}: {details['gpu_name']} (compute {details.get('gpu_capability', '?')}"
                           f"{', ' + memory if memory else ''}), driver {details.get('driver') or '?'}")
    software = [f"{name} {details.get('version', '?')}" for name, details in
                (environment.get("frameworks") or {}).items() if isinstance(details, Mapping)]
    software.append(f"Python {environment.get('python', '?')}")
    commit = environment.get("git_commit")
    origin = f"commit {commit[:12]}" if commit else "no git commit"
    if environment.get("git_dirty"):
        origin += " with uncommitted changes"
    started, finished = environment.get("started_at"), environment.get("finished_at")
    if started:
        origin += f"; {started}" + (f" to {finished}" if finished else "")
    return ["; ".join(machine), ", ".join(software), origin + " (full environment: show --env, report.md)"]
