"""The one record type of a measurement, and the run file (``results.json``) that holds a run's records.

A ``Result`` stores what was measured (raw samples, first-step time, peak memory) and its configuration;
every statistic is derived from the samples on demand and written alongside them, never stored rounded.
Tables, pandas frames, markdown reports and comparisons all read this one record.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from bench.stats import Summary, summarize

SCHEMA = 1

MODES: dict[str, str] = {
    "forward": "eval mode (dropout off), no gradient tracking: logits = model(images)",
    "forward-backward": "training mode (dropout on): logits, mean cross-entropy against fixed random labels, "
    "gradients with respect to every parameter; no optimizer update",
    "train": "forward-backward plus an SGD step (momentum 0.9, weight decay 5e-4, lr 0.01)",
}
PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "fp16")
STATUSES: tuple[str, ...] = ("ok", "failed", "skipped")

# FLOPs count 2 per multiply-accumulate of the forward pass (convolution and dense weights only); the
# backward pass costs about twice the forward (one product for input gradients, one for weight gradients),
# so forward-backward and train count 3x forward. The optimizer update is not counted.
FLOP_CONVENTION = (
    "2 FLOPs per multiply-accumulate of conv and dense weights; forward-backward and train = 3 x forward; "
    "optimizer update not counted"
)
_MODE_FLOP_FACTOR = {"forward": 1, "forward-backward": 3, "train": 3}


def step_flops(macs_per_image: int, batch_size: int, mode: str) -> int:
    """FLOPs of one step of ``mode`` under ``FLOP_CONVENTION``."""
    return 2 * macs_per_image * batch_size * _MODE_FLOP_FACTOR[mode]


class RunFileError(ValueError):
    """A results file that cannot be read: missing, not JSON, truncated or of another schema."""


@dataclass(frozen=True)
class Config:
    """One configuration of a run: what is timed and how. Frozen and hashable."""

    model: str
    framework: str
    device: str
    mode: str
    batch_size: int
    precision: str = "fp32"
    compile: bool = False
    channels_last: bool = False
    threads: int | None = None
    warmup: int = 10
    iters: int = 100
    max_time_s: float | None = None
    repeats: int = 1  # fresh worker processes, each with its own burn-in and timed loop

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}. Received: mode={self.mode!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}. Received: {self.precision!r}")

    def key(self) -> tuple:
        """What identifies the same configuration across two runs (the protocol fields may differ)."""
        return (
            self.model, self.framework, self.device, self.mode, self.batch_size,
            self.precision, self.compile, self.channels_last, self.threads,
        )

    def label(self) -> str:
        flags = "".join(
            f" +{name}" for name, on in (("compile", self.compile), ("channels-last", self.channels_last)) if on
        )
        return (
            f"{self.model} {self.framework} {self.device} {self.mode} "
            f"b{self.batch_size} {self.precision}{flags}"
        )


@dataclass(frozen=True)
class Result:
    """One configuration's outcome, with every timed sample kept."""

    config: Config
    status: str
    reason: str | None = None
    samples_ms: tuple[float, ...] = ()
    first_step_ms: float | None = None
    peak_memory_bytes: int | None = None
    capped: bool = False
    macs_per_image: int | None = None
    peak_gflops_per_s: float | None = None
    # With repeats, the median of each worker process's own samples (``samples_ms`` pools them all): the
    # spread between processes, which samples from one process cannot show.
    process_medians_ms: tuple[float, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}. Received: status={self.status!r}")
        if self.status == "ok" and not self.samples_ms:
            raise ValueError("an ok result needs samples")

    @property
    def summary(self) -> Summary | None:
        return summarize(self.samples_ms) if self.samples_ms else None

    @property
    def flops_per_step(self) -> int | None:
        if self.macs_per_image is None:
            return None
        return step_flops(self.macs_per_image, self.config.batch_size, self.config.mode)

    def derived(self) -> dict[str, Any]:
        """Every figure computed from the samples; None where nothing was measured."""
        summary = self.summary
        if summary is None:
            keys = [f.name for f in fields(Summary)] + ["images_per_s", "ms_per_image", "gflops_per_s", "mfu",
                                                        "processes", "process_spread"]
            values = dict.fromkeys(keys)
            values["n"] = 0
            return values
        values = summary.to_dict()
        batch = self.config.batch_size
        values["images_per_s"] = batch / (summary.median_ms / 1e3)
        values["ms_per_image"] = summary.median_ms / batch
        flops = self.flops_per_step
        gflops = flops / (summary.median_ms / 1e3) / 1e9 if flops is not None else None
        values["gflops_per_s"] = gflops
        values["mfu"] = gflops / self.peak_gflops_per_s if gflops is not None and self.peak_gflops_per_s else None
        medians = self.process_medians_ms
        values["processes"] = max(len(medians), 1)
        values["process_spread"] = (max(medians) - min(medians)) / summary.median_ms if len(medians) > 1 else None
        return values

    def to_dict(self) -> dict[str, Any]:
        stored = asdict(self)
        config = stored.pop("config")
        stored["samples_ms"] = list(self.samples_ms)
        stored["process_medians_ms"] = list(self.process_medians_ms)
        stored["flops_per_step"] = self.flops_per_step
        return {**config, **stored, **self.derived()}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Result:
        """Rebuild from a run file's entry; derived figures in it are ignored and recomputed."""
        config = Config(**{f.name: values[f.name] for f in fields(Config) if f.name in values})
        sequences = ("config", "samples_ms", "process_medians_ms")
        stored = {f.name: values[f.name] for f in fields(cls) if f.name not in sequences and f.name in values}
        return cls(config=config, samples_ms=tuple(float(v) for v in values.get("samples_ms") or ()),
                   process_medians_ms=tuple(float(v) for v in values.get("process_medians_ms") or ()), **stored)

    def with_peak(self, peak_gflops_per_s: float | None) -> Result:
        return replace(self, peak_gflops_per_s=peak_gflops_per_s)


@dataclass
class Run:
    """A run file's contents: the environment it was measured in and its results, in order."""

    environment: dict[str, Any]
    results: list[Result]
    path: Path | None = None
    # As the file states them: a file written by an older version keeps its own descriptions.
    modes: dict[str, str] = field(default_factory=lambda: dict(MODES))
    flop_convention: str = FLOP_CONVENTION

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "environment": self.environment,
            "flop_convention": self.flop_convention,
            "modes": self.modes,
            "results": [result.to_dict() for result in self.results],
        }


def write_run(path: Path, run: Run) -> None:
    """Write atomically: a reader (or a crash) sees the previous complete file or the new one, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(run.to_dict(), indent=1, allow_nan=False, default=_json_default)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(handle, 0o666 & ~_umask())  # mkstemp makes the file private; a results file is for sharing
        with os.fdopen(handle, "w") as stream:
            stream.write(text + "\n")
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _json_default(value: Any) -> Any:
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def read_run(path: Path | str) -> Run:
    """Read a run file (or a run folder holding ``results.json``); ``RunFileError`` says what is wrong with it."""
    path = Path(path)
    if path.is_dir():
        path = path / "results.json"
    if not path.exists():
        raise RunFileError(f"no results file at {path}")
    try:
        text = path.read_text()
        document = json.loads(text)
    except OSError as error:
        raise RunFileError(f"cannot read {path}: {error.strerror or error}") from None
    except UnicodeDecodeError:
        raise RunFileError(f"{path} is not a results file (not text)") from None
    except json.JSONDecodeError as error:
        truncated = "truncated" if error.pos >= len(text.rstrip()) else "not valid JSON"
        raise RunFileError(f"{path} is {truncated} (line {error.lineno}, column {error.colno})") from None
    if not isinstance(document, dict) or "schema" not in document:
        raise RunFileError(f"{path} is JSON but not a results file (no 'schema' key)")
    if document["schema"] != SCHEMA:
        raise RunFileError(f"{path} has schema {document['schema']!r}; this version reads schema {SCHEMA}")
    try:
        results = [Result.from_dict(entry) for entry in document["results"]]
        environment = dict(document["environment"])
        modes = dict(document.get("modes") or MODES)
        flop_convention = str(document.get("flop_convention") or FLOP_CONVENTION)
    except (KeyError, TypeError, ValueError) as error:
        raise RunFileError(f"{path} has a malformed result: {error}") from None
    return Run(environment=environment, results=results, path=path, modes=modes, flop_convention=flop_convention)
