"""What a person reads: pandas frames, terminal tables, plots, markdown reports and run comparisons."""

__all__ = ["load"]


def __getattr__(name: str):
    # pandas takes about a second to import; commands that never build a frame (history, show) should not pay it.
    if name == "load":
        from reports.frame import load

        return load
    raise AttributeError(f"module 'reports' has no attribute {name!r}")
