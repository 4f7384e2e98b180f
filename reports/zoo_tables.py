"""Tables of the zoo: the model list, and the proof that both definitions of each model are the same network."""

from __future__ import annotations

from rich.table import Table


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
    """``cli.py verify``: counts of both builds against the spec, then the parity figures and verdicts."""
    counts_table = Table(title="Equivalence of the torch and TensorFlow definitions", title_justify="left")
    for column in ("model", "framework", "parameters", "BN statistics", "MACs / image", "counts"):
        counts_table.add_column(column, justify="left" if column in ("model", "framework", "counts") else "right")
    for report in reports:
        for framework, counts in report["frameworks"].items():
            ok = counts == report["expected"]
            counts_table.add_row(report["model"], framework, f"{counts['params']:,}", f"{counts['statistics']:,}",
                                 f"{counts['macs']:,}", "[green]match spec[/]" if ok else "[red]differ from spec[/]")
    first = reports[0]["parity"]
    parity_table = Table(
        title=f"Parity with transferred weights: max |torch - tf| relative to max |torch|; pass when float64 logits, "
        f"every float64 gradient and BatchNorm statistic <= {first['grads_rtol']:.0e} and float32 logits <= "
        f"{first['fp32_logits_rtol']:.0e}",
        title_justify="left",
        caption="logits in inference mode; gradients in training mode with dropout off (BatchNorm on batch "
        "statistics); BN statistics: moving means and variances after that pass",
        caption_justify="left",
    )
    for column in ("model", "batch", "logits fp32", "logits fp64", "gradients fp64 (worst)", "BN statistics fp64",
                   "result"):
        parity_table.add_column(column, justify="right" if column == "batch" else "left")
    for report in reports:
        parity = report["parity"]
        statistics = (f"{parity['statistics_rel_diff']:.2e} ({parity['worst_statistic']})"
                      if parity["statistics_rel_diff"] is not None else "-")
        parity_table.add_row(
            report["model"], str(parity["batch_size"]), f"{parity['fp32_logits_rel_diff']:.2e}",
            f"{parity['logits_rel_diff']:.2e}", f"{parity['grads_rel_diff']:.2e} ({parity['worst_grad']})",
            statistics, "[green]pass[/]" if report["passed"] else "[red]FAIL[/]",
        )
    return [counts_table, parity_table]
