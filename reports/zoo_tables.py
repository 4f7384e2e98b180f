"""Tables of the zoo: the model list, and the proof that both definitions of each model are the same network."""

from __future__ import annotations

from rich.markup import escape
from rich.table import Table

import zoo
from bench.engines import ENGINES, installed_engines
from zoo.parity import TRANSFERS


def zoo_rows() -> list[dict]:
    """A row per model of the zoo: its spec's figures and the installed engines that run it (all of them: a model
    has a builder in every framework of zoo's table, and each serves every engine of its definitions)."""
    installed = installed_engines()
    rows = []
    for name in zoo.list_models():
        spec = zoo.get_spec(name)
        rows.append({"name": name, "title": spec.title, "input": list(spec.input_shape), "classes": spec.num_classes,
                     "params": spec.params, "statistics": spec.statistics, "macs": spec.macs, "engines": installed,
                     "reference": spec.reference})
    return rows


def zoo_table(rows: list[dict]) -> Table:
    """``cli.py list``: a row per model with its input, parameters, MACs and the engines that run it (said once
    below when every model runs in every installed engine); the engines not installed, each with what installs it."""
    missing = [engine for engine in ENGINES.values() if not engine.installed()]
    same_engines = len({tuple(row["engines"]) for row in rows}) <= 1
    table = Table(title="Model zoo", title_justify="left", caption_justify="left",
                  caption="input is C x H x W; parameters are trainable ones, BN statistics the moving means and "
                          "variances kept apart")
    if same_engines:
        engines = rows[0]["engines"] if rows else []
        table.caption += f"; every model runs in: {', '.join(engines) or 'no installed engine'}"
    if missing:
        table.caption += "; not installed: " + ", ".join(f"{engine.name} ({escape(engine.install)})"
                                                         for engine in missing)
    columns = [("name", "left"), ("title", "left"), ("input", "right"), ("parameters", "right"),
               ("BN statistics", "right"), ("MACs/image", "right"), *([] if same_engines else [("engines", "left")])]
    for column, justify in columns:
        table.add_column(column, justify=justify, no_wrap=column not in ("title", "engines"))
    for row in rows:
        table.add_row(row["name"], row["title"], "x".join(map(str, row["input"])), f"{row['params']:,}",
                      f"{row['statistics']:,}" if row["statistics"] else "-", f"{row['macs']:,}",
                      *([] if same_engines else [", ".join(row["engines"]) or "-"]))
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
    first = next((pair for pair in pairs if "grads_rtol" in pair), None)
    fp32_rtol = next((pair["fp32_logits_rtol"] for pair in pairs if "fp32_logits_rtol" in pair), None)
    float64 = (f"float64 logits, every float64 gradient and BatchNorm statistic <= {first['grads_rtol']:.0e} and "
               if first else "")
    parity_table = Table(
        title=f"Parity with the reference's weights: max |reference - other| relative to max |reference|; pass when "
        f"{float64}float32 logits <= {fp32_rtol:.0e}" if fp32_rtol is not None else "Parity: every proof failed",
        title_justify="left",
        caption="logits in inference mode; gradients in training mode with dropout off (BatchNorm on batch "
        "statistics); BN statistics: moving means and variances after that pass; an inference runtime (running "
        "the reference's twin, exported) is held to the reference's float32 logits only",
        caption_justify="left",
    )
    for column in ("model", "frameworks", "batch", "logits fp32", "logits fp64", "gradients fp64 (worst)",
                   "BN statistics fp64", "result"):
        parity_table.add_column(column, justify="right" if column == "batch" else "left")
    for report in reports:
        for parity in report["parity"]:
            if "error" in parity:
                parity_table.add_row(report["model"], f"-> {parity['other']}", str(parity["batch_size"] or "-"),
                                     "-", "-", "-", "-", f"[red]FAIL[/] {escape(parity['error'])}")
                continue
            statistics = (f"{parity['statistics_rel_diff']:.2e} ({parity['worst_statistic']})"
                          if parity.get("statistics_rel_diff") is not None else "-")
            logits64 = f"{parity['logits_rel_diff']:.2e}" if "logits_rel_diff" in parity else "-"
            grads = f"{parity['grads_rel_diff']:.2e} ({parity['worst_grad']})" if "grads_rel_diff" in parity else "-"
            parity_table.add_row(
                report["model"], f"{parity['reference']} -> {parity['other']}", str(parity["batch_size"]),
                f"{parity['fp32_logits_rel_diff']:.2e}", logits64, grads, statistics,
                "[green]pass[/]" if parity["passed"] else "[red]FAIL[/]",
            )
    return [counts_table, parity_table]
