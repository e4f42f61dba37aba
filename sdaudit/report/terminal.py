"""The terminal report (rich): verdict panel, layer table, top selective units, curves."""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import Any

from sdaudit.report.model import AuditReport, Curve
from sdaudit.report.text import gate_text, num, verdict_line

SPARKS = "▁▂▃▄▅▆▇█"
RISK_STYLE = {"low": "bold green", "medium": "bold yellow", "high": "bold red"}


def sparkline(values: tuple[float, ...] | list[float], lo: float = 0.0, hi: float = 1.0) -> str:
    out = []
    for v in values:
        if v is None or not math.isfinite(v):
            out.append(" ")
            continue
        t = 0.0 if hi <= lo else (min(max(v, lo), hi) - lo) / (hi - lo)
        out.append(SPARKS[min(int(t * (len(SPARKS) - 1) + 0.5), len(SPARKS) - 1)])
    return "".join(out)


def _f(value: float | None, digits: int = 3) -> str:
    return num(value, digits)


def show(console: Any, table: Any) -> None:
    """Print a table at the console's width, or wider where its columns cannot shrink to fit:
    numbers never wrap or get cut ("0.96" for 0.961); the terminal folds the wider lines instead."""
    from rich.measure import Measurement

    wide = console.options.update_width(10_000)
    need = Measurement.get(console, wide, table).minimum
    for column in table.columns:
        cells = [column.header, *column.cells]
        if column.no_wrap:  # rich measures a no_wrap column by its longest word only
            longest = max(Measurement.get(console, wide, c).maximum for c in cells)
            need += max(0, longest - max(Measurement.get(console, wide, c).minimum for c in cells))
            column.min_width = max(column.min_width or 0, longest)
        else:  # a folding column (layer names) may shrink below its longest word
            natural = max(Measurement.get(console, wide, c).minimum for c in cells)
            need -= max(0, natural - max(column.min_width or 0, min(natural, 12)))
    width = console.width
    if need <= width:
        console.print(table)
        return
    console.width = need  # print(width=...) would clamp to the console's width
    try:
        console.print(table)
    finally:
        console.width = width


def _class_name(report: AuditReport, index: int) -> str:
    names = report.data.get("class_names")
    if isinstance(names, list) and 0 <= index < len(names):
        return f"{names[index]}"
    return str(index)


def render(report: AuditReport, console: Any, top: int = 10) -> None:
    from rich import box
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text

    s = report.summary
    lines = Text()
    lines.append("model     ", style="dim")
    lines.append(f"{report.model['path']}  (sha256 {str(report.model['sha256'])[:12]})\n")
    lines.append("data      ", style="dim")
    lines.append(f"{report.data['path']}  ({report.data['samples']} samples, "
                 f"{report.data['classes']} classes)\n")
    lines.append("runtime   ", style="dim")
    precision = report.runtime.get("precision", "fp32")
    lines.append(f"{report.runtime['provider']}, {report.runtime['threads']} threads"
                 f"{', sweep in fp16' if precision == 'fp16' else ''}\n")
    lines.append("accuracy  ", style="dim")
    if report.data.get("labels") == "predicted":
        lines.append("– (no labels given: the unablated model's predictions stand in, so the "
                     "curves measure agreement with them)\n")
    else:
        lines.append(f"{_f(float(report.unablated['accuracy']))} unablated "
                     f"(on the data given, with its labels)\n")
    if s.ablation_auc is not None:
        lo, hi = s.ablation_auc_ci or (None, None)
        lines.append("ablation  ", style="dim")
        lines.append(f"AUC {_f(s.ablation_auc)}", style="bold")
        shown = f"95% CI [{_f(lo)}, {_f(hi)}]" if lo is not None else "no interval (one draw)"
        lines.append(f"  {shown}  (1.0 = no reliance on single units)\n")
        d = s.draws
        if d:
            lines.append("draws     ", style="dim")
            lines.append(f"{d['used']} ({d['mode']}"
                         + (f", half-width {_f(d['half_width'])}, target {d['target']:g}, "
                            f"stopped: {d['stopped'].replace('_', ' ')}" if d["mode"] == "auto"
                            else "") + "); the interval covers draws and images\n")
    if s.noise_auc is not None:
        lines.append("noise     ", style="dim")
        lines.append(f"AUC {_f(s.noise_auc)}\n", style="bold")
    if s.risk is not None:
        lines.append("risk      ", style="dim")
        lines.append(s.risk.upper(), style=RISK_STYLE.get(s.risk, "bold"))
        lines.append(f"  (low ≥ {s.risk_thresholds['low']:.2f} > medium ≥ "
                     f"{s.risk_thresholds['medium']:.2f} > high: absolute thresholds"
                     + ("; the verdict rests on the baseline)\n"
                        if s.risk_basis == "baseline" else
                        ", a heuristic; compare against a sibling model for a firm verdict)\n"))
    lines.append("gate      ", style="dim")
    gate_style = "green" if report.gate.passed else "bold red"
    lines.append(gate_text(asdict(report.gate)), style=gate_style)
    for note in s.notes:
        lines.append(f"\nnote      {note}", style="yellow")
    console.print(Panel(lines, title="sdaudit: reliance on single directions", box=box.ROUNDED))

    table = Table(title="Layers (SI: class selectivity, MI: bits, AUC: this layer ablated alone)",
                  box=box.SIMPLE_HEAD)
    for col in ("layer", "op", "units", "dead", "SI mean", "SI med", "SI max", "MI",
                "ρ(SI,imp)", "AUC"):
        # Narrow terminals fold a long layer name over lines rather than cut it to "/3…".
        # Numbers and op types never wrap: a table too wide for the console is printed wider.
        table.add_column(col, justify="left" if col in ("layer", "op") else "right",
                         overflow="fold", no_wrap=col != "layer",
                         min_width=min(8, max(len(x.name) for x in report.layers))
                         if col == "layer" else None)
    for layer in report.layers:
        table.add_row(layer.name, layer.op_type, str(layer.channels), str(layer.dead_units),
                      _f(layer.selectivity_mean), _f(layer.selectivity_median),
                      _f(layer.selectivity_max), _f(layer.mutual_information_mean),
                      _f(layer.importance_selectivity_spearman, 2),
                      _f(s.per_layer_auc.get(layer.name)))
    show(console, table)

    units = [(u.selectivity[i], layer, i) for layer in report.layers
             for u in [layer.units] if u.selectivity is not None for i in range(layer.channels)]
    if units and top > 0:
        units.sort(key=lambda t: (-t[0], t[1].name, t[2]))
        sel = Table(title=f"Most class-selective units (top {min(top, len(units))})",
                    box=box.SIMPLE_HEAD)
        for col in ("layer", "unit", "SI", "class", "MI (bits)", "Δacc alone", "Δloss alone"):
            sel.add_column(col, justify="left" if col in ("layer", "class") else "right",
                           overflow="fold", no_wrap=col not in ("layer", "class"))
        for si, layer, i in units[:top]:
            u = layer.units
            pref = u.preferred_class[i] if u.preferred_class else -1
            sel.add_row(layer.name, str(i), _f(si), _class_name(report, pref),
                        _f(u.mutual_information[i] if u.mutual_information else None),
                        _f(-u.importance[i] if u.importance else None),
                        _f(u.importance_loss[i] if u.importance_loss else None))
        show(console, sel)

    if report.ablation is not None:
        joint = report.ablation.joint
        if joint is not None:
            _curve_table(console, joint, "Random ablation (all selected layers together)",
                         "fraction")
        curves = Table(title="Ablation curves (normalized accuracy)", box=box.SIMPLE_HEAD)
        curves.add_column("curve", overflow="fold")
        curves.add_column("sparkline", no_wrap=True)
        curves.add_column("AUC", justify="right", no_wrap=True)
        rows: list[tuple[str, Curve]] = []
        if joint is not None:
            rows.append(("random, joint", joint))
        rows += [(f"random, {name}", c) for name, c in report.ablation.per_layer.items()]
        rows += [(f"by selectivity, {k.replace('_', ' ')}", c)
                 for k, c in report.ablation.ordered.items()]
        for label, c in rows:
            curves.add_row(label, sparkline(c.normalized_mean), _f(c.auc))
        if rows:
            show(console, curves)
        if joint is not None and joint.class_auc:
            _class_table(console, report, joint)
    if report.noise is not None:
        _curve_table(console, report.noise, "Noise (σ = α × each unit's s.d.)", "α")
    # The last line of a CI log: one line (≤ 160 characters), never wrapped.
    line = verdict_line({"summary": asdict(s), "gate": asdict(report.gate)})
    console.print(line, style=gate_style, soft_wrap=True, markup=False, highlight=False)


def _class_table(console: Any, report: AuditReport, joint: Curve, shown: int = 5) -> None:
    from rich import box
    from rich.table import Table

    ranked = sorted((a, c) for c, a in enumerate(joint.class_auc) if math.isfinite(a))
    if not ranked:
        return
    table = Table(title="Per-class reliance: classes that collapse first under joint random "
                  "ablation", box=box.SIMPLE_HEAD)
    for col in ("class", "class AUC", "unablated accuracy"):
        table.add_column(col, justify="left" if col == "class" else "right", overflow="fold",
                         no_wrap=col != "class")
    per_class = report.unablated.get("per_class_accuracy") or []
    for auc, c in ranked[:shown]:
        table.add_row(_class_name(report, c), _f(auc),
                      _f(per_class[c] if c < len(per_class) else None))
    if len(ranked) > shown:
        table.add_row("…", "", "")
        auc, c = ranked[-1]
        table.add_row(_class_name(report, c), _f(auc),
                      _f(per_class[c] if c < len(per_class) else None))
    show(console, table)


def _curve_table(console: Any, curve: Curve, title: str, x_name: str) -> None:
    from rich import box
    from rich.table import Table

    table = Table(title=f"{title}   {sparkline(curve.normalized_mean)}", box=box.SIMPLE_HEAD)
    for col in (x_name, "off" if x_name == "fraction" else "draws", "acc", "s.d.", "95% CI",
                "norm", "agree", "loss"):
        table.add_column(col, justify="right", no_wrap=True)
    for j, x in enumerate(curve.x):
        table.add_row(
            f"{x:.3g}", str(curve.units_ablated[j]) if x_name == "fraction" else str(curve.draws),
            _f(curve.accuracy_mean[j]), _f(curve.accuracy_std[j]),
            "–" if curve.accuracy_ci_low[j] is None else
            f"{_f(curve.accuracy_ci_low[j])}–{_f(curve.accuracy_ci_high[j])}",
            _f(curve.normalized_mean[j]), _f(curve.agreement_mean[j]), _f(curve.loss_mean[j]),
        )
    show(console, table)
