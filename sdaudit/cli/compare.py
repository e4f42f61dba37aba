"""``sdaudit compare REPORT.json ...``: rank models by ablation AUC, best first."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path

import typer

from sdaudit.cli.common import boundary, err_console, out_console, write_stdout


class CompareFormat(str, Enum):
    text = "text"
    json = "json"


def compare(
    reports: list[Path] = typer.Argument(..., metavar="REPORT.json...",
                                         help="JSON reports written by `sdaudit scan --json`, "
                                         "one per model.", show_default=False),
    fmt: CompareFormat = typer.Option(CompareFormat.text, "--format",
                                      help="text (table) or json on stdout."),
    html_path: Path | None = typer.Option(None, "--html", help="Write an HTML page here.",
                                          show_default=False),
) -> None:
    """Rank models (checkpoints, variants) by ablation AUC, best first.

    Higher AUC means less reliance on single directions, which Morcos et al. found to go with
    better generalization. Neighbours whose 95% intervals overlap are marked: their order is
    not reliable.
    """
    with boundary():
        from sdaudit.outputs import write_atomic
        from sdaudit.paths import PathPlan, Use
        from sdaudit.report.compare import compare as rank

        writes = () if html_path is None else (Use("--html", html_path),)
        PathPlan(tuple(Use("REPORT", r) for r in reports), writes).check()
        ranking, warnings = rank(list(reports))
        if html_path is not None:
            from sdaudit.report.html import render_comparison

            write_atomic(html_path, render_comparison(ranking, warnings), "--html")
        errors = err_console()
        for warning in warnings:
            errors.print(f"[yellow]warning:[/] {warning}")
        if fmt is CompareFormat.json:
            write_stdout(json.dumps({"ranking": ranking, "warnings": warnings}, indent=2) + "\n")
            return
        from rich import box
        from rich.table import Table

        table = Table(title="Models ranked by ablation AUC (higher: less reliance on single "
                      "directions)", box=box.SIMPLE_HEAD)
        for col in ("rank", "model", "AUC", "95% CI", "", "noise AUC", "accuracy"):
            # No column wraps (file names and intervals split mid-token before); a table wider
            # than the console is printed wider.
            table.add_column(col, justify="left" if col in ("model", "") else "right",
                             no_wrap=True)

        from sdaudit.report.terminal import show
        from sdaudit.report.text import num as f

        for e in ranking:
            table.add_row(str(e["rank"]), e["name"], f(e["ablation_auc"]),
                          f"{f(e['ci'][0])}–{f(e['ci'][1])}",
                          "≈ next" if e["overlaps_next"] else "", f(e["noise_auc"]),
                          f(e["baseline_accuracy"]))
        console = out_console()
        show(console, table)
        if any(e["overlaps_next"] for e in ranking):
            console.print("≈ next: the 95% intervals of neighbours overlap; their order is not "
                          "reliable (more --draws narrows them)", markup=False)
