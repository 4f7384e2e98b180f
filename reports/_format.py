"""Number formatting shared by the terminal tables and the markdown report, so both print the same figures."""

from __future__ import annotations

import math

_BYTE_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


def milliseconds(value: float) -> str:
    """Four significant figures: enough to see a 0.1% change, few enough to read at a glance."""
    if value == 0 or not math.isfinite(value):
        return f"{value:g}"
    decimals = 3 - math.floor(math.log10(abs(value)))
    return f"{value:.{min(max(decimals, 0), 6)}f}"


def confidence_interval(bounds: tuple[float, float] | list[float]) -> str:
    low, high = bounds
    return f"{milliseconds(low)}–{milliseconds(high)}"


def rate(value: float | None) -> str:
    """Images/s and GFLOP/s: whole numbers with separators once they are large, one decimal below 100."""
    if value is None:
        return ""
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.1f}"


def percent(fraction: float | None) -> str:
    return "" if fraction is None else f"{100 * fraction:.1f}"


def ratio(value: float) -> str:
    return f"{value:.2f}x"


def byte_size(count: int | None) -> str:
    """Binary units (KiB = 1024 B), as allocators and nvidia-smi report memory."""
    if count is None:
        return ""
    size = float(count)
    unit_index = 0
    while abs(size) >= 1024 and unit_index < len(_BYTE_UNITS) - 1:
        size /= 1024
        unit_index += 1
    return f"{count} B" if unit_index == 0 else f"{size:.1f} {_BYTE_UNITS[unit_index]}"


def variant(compile_: bool, channels_last: bool) -> str:
    """The optional execution settings of a configuration, empty for the plain eager NCHW default."""
    return ", ".join(name for name, on in (("compile", compile_), ("channels-last", channels_last)) if on)


def replicas(count: int | None, nodes: int = 1) -> str:
    """A data-parallel configuration's replicas ("x2", "x2 x2 machines"); empty for one plain process."""
    if not count:
        return ""
    return f"x{count}" + (f" x{nodes} machines" if nodes > 1 else "")


def data_source(data: str, workers: int | None, autotune: bool) -> str:
    """Where a configuration's batch came from: "synthetic", "jpeg, 2 workers", "jpeg, AUTOTUNE"."""
    if data == "synthetic":
        return data
    if autotune:
        return f"{data}, AUTOTUNE"
    return f"{data}, {workers} worker{'s' if workers != 1 else ''}"


def setting(value: object) -> str:
    """A recorded setting as text: yes/no for booleans, "none" for an unset one."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)
