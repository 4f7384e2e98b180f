"""Tables of the zoo: the model list, and the proof that both definitions of each model are the same network."""

from __future__ import annotations

from rich.table import Table

import zoo
from bench.engines import installed_engines
from zoo.parity import TRANSFERS


def zoo_rows() -> list[dict]:
    """A row per model of the zoo: its spec's figures and the engines installed here."""
    installed = installed_engines()
    return [{"name": name, "title": spec.title, "input": list(spec.input_shape), "classes": spec.num_classes,
             "params": spec.params, "statistics": spec.statistics, "macs": spec.macs, "frameworks": installed,
             "reference": spec.reference} for name, spec in ((name, zoo.get_spec(name)) for name in zoo.list_models())]


def zoo_table(rows: list[dict]) -> Table:
    """``cli.py list``: a row per model with its input, parameters and MACs; the frameworks installed below."""
    installed = sorted({framework for row in rows for framework in row["frameworks"]})
    table = Table(title="Model zoo", title_justify="left", caption_justify="left",
                  caption=f"frameworks installed: {', '.join(installed) or 'none'}; input is C x H x W")
    table.caption += "; parameters are trainable ones, BN statistics the moving means and variances kept apart"
    for column, justify in (("name", "left"), ("title", "left"), ("input", "right"), ("parameters", "right"),
                            ("BN statistics", "right"), ("MACs/image", "right")):
        table.add_column(column, justify=justify, no_wrap=column != "title")
    for row in rows:
        table.add_row(row["name"], row["title"], "x".join(map(str, row["input"])), f"{row['params']:,}",
                      f"{row['statistics']:,}" if row["statistics"] else "-", f"{row['macs']:,}")
    return table


def verify_tables(reports: list[dict]) -> list[Table]:
    """``cli.py verify``: counts of every build against the spec, then the parity figures and verdicts of every
    pair of frameworks proven (none where only one framework is installed, which the caption says)."""
    counts_table = Table(title="Each framework's build against the spec", title_justify="left")
    for column in ("model", "framework", "parameters", "BN statistics", "MACs / image", "counts"):
        counts_table.add_column(column, justify="left" if column in ("model", "framework", "counts") else "right")
    for report in reports:
        for framework, counts in report["frameworks"].items():
            ok = counts == report["expected"]
            counts_table.add_row(report["model"], framework, f"{counts['params']:,}", f"{counts['statistics']:,}",
                                 f"{counts['macs']:,}", "[green]match spec[/]" if ok else "[red]differ from spec[/]")
    pairs = [parity for report in reports for parity in report["parity"]]
    if not pairs:
        pairs_known = ", ".join(f"{transfer.reference} -> {transfer.other}" for transfer in TRANSFERS)
        counts_table.caption = f"parity not proven: it needs two installed frameworks with a weight transfer " \
                               f"({pairs_known})"
        counts_table.caption_justify = "left"
        return [counts_table]
    first = pairs[0]
    parity_table = Table(
        title=f"Parity with transferred weights: max |reference - other| relative to max |reference|; pass when "
        f"float64 logits, every float64 gradient and BatchNorm statistic <= {first['grads_rtol']:.0e} and float32 "
        f"logits <= {first['fp32_logits_rtol']:.0e}",
        title_justify="left",
        caption="logits in inference mode; gradients in training mode with dropout off (BatchNorm on batch "
        "statistics); BN statistics: moving means and variances after that pass",
        caption_justify="left",
    )
    for column in ("model", "frameworks", "batch", "logits fp32", "logits fp64", "gradients fp64 (worst)",
                   "BN statistics fp64", "result"):
        parity_table.add_column(column, justify="right" if column == "batch" else "left")
    for report in reports:
        for parity in report["parity"]:
            statistics = (f"{parity['statistics_rel_diff']:.2e} ({parity['worst_statistic']})"
                          if parity["statistics_rel_diff"] is not None else "-")
            parity_table.add_row(
                report["model"], f"{parity['reference']} -> {parity['other']}", str(parity["batch_size"]),
                f"{parity['fp32_logits_rel_diff']:.2e}", f"{parity['logits_rel_diff']:.2e}",
                f"{parity['grads_rel_diff']:.2e} ({parity['worst_grad']})", statistics,
                "[green]pass[/]" if parity["passed"] else "[red]FAIL[/]",
            )
    return [counts_table, parity_table]
