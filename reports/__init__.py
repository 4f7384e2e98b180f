"""What a person reads: pandas frames, terminal tables, plots, markdown reports and run comparisons."""

from reports.frame import load

__all__ = ["load"]
