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
    """Rank models (checkpoints, variants) by ablation AUC, best first, as a statistical ranking.

    Higher AUC means less reliance on single directions, which Morcos et al. found to go with
    better generalization. Each model is compared with the next: the difference of their AUCs
    with its 95% interval (draw by draw where two reports share data and units). Neighbours not
    told apart share a tie group; compare says how many draws or images would separate them.
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
        if html_path is not None:
            errors.print(f"[dim]comparison page written to {html_path}[/]")
        for warning in warnings:
            errors.print(f"[yellow]warning:[/] {warning}")
        if fmt is CompareFormat.json:
            write_stdout(json.dumps({"ranking": ranking, "warnings": warnings}, indent=2) + "\n")
            return
        from rich import box
        from rich.table import Table

        table = Table(title="Models ranked by ablation AUC (higher: less reliance on single "
                      "directions)", box=box.SIMPLE_HEAD)
        for col in ("#", "tie", "model", "AUC", "95% CI", "draws", "Δ next (95% CI)",
                    "accuracy"):
            # No column wraps (file names and intervals split mid-token before); a table wider
            # than the console is printed wider.
            table.add_column(col, justify="left" if col in ("model", "Δ next (95% CI)")
                             else "right", no_wrap=True)

        from sdaudit.report.terminal import show
        from sdaudit.report.text import num as f

        notes: list[str] = []
        for e in ranking:
            vs = e["vs_next"]
            cell = ""
            if vs is not None:
                lo, hi = vs["ci"]
                cell = (f"{vs['difference']:+.3f} ({f(lo)}–{f(hi)})" if lo is not None
                        else f"{vs['difference']:+.3f} (no interval)")
                cell += ("" if vs["separable"] else " ≈") + (" p" if vs["paired"] else "")
                if not vs["separable"]:
                    notes.append(_separation_note(f"#{e['rank']}", f"#{e['rank'] + 1}", vs))
            table.add_row(str(e["rank"]), str(e["tie_group"]), e["name"], f(e["ablation_auc"]),
                          f"{f(e['ci'][0])}–{f(e['ci'][1])}", str(e.get("draws") or "–"), cell,
                          f(e["unablated_accuracy"]))
        console = out_console()
        show(console, table)
        if notes:
            console.print("≈: the 95% interval of the difference holds 0, so the two share a tie "
                          "group; their order is not reliable at this precision. p: paired draws "
                          "(same data, units and seed).", markup=False)
            for note in notes:
                console.print(f"  {note}", markup=False, soft_wrap=True)


def _separation_note(a: str, b: str, vs: dict[str, object]) -> str:
    draws = vs["draws_to_separate"]
    images = vs["images_to_separate"]
    parts = []
    if draws is not None:
        parts.append(f"about {draws} draws each")
    if images is not None:
        parts.append(f"about {images} images each")
    if not parts:
        return f"{a} ≈ {b}: no difference measured that more draws or images could confirm"
    return (f"{a} ≈ {b}: {' or '.join(parts)} would separate them, if the difference is "
            "what was measured")
