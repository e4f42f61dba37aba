"""Self-contained HTML reports: matplotlib figures embedded as inline SVG, numbers beside each.

Rendered from the JSON form of a report (``report_to_dict``), so a report written earlier can be
rendered again, and ``sdaudit compare`` uses the same pieces. Nothing is fetched when the page
is opened: no scripts, fonts or images from elsewhere.
"""

from __future__ import annotations

import html
import io
import math
from typing import Any

from sdaudit.report.text import gate_text, unablated

RISK_COLOURS = {"low": "#1a7f37", "medium": "#b08800", "high": "#cf222e", None: "#57606a"}
CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2rem auto;
max-width:1100px;color:#1f2328;padding:0 1rem}
h1{font-size:1.5rem;margin-bottom:.2rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px
solid #d0d7de;padding-bottom:.3rem}.verdict{border:1px solid #d0d7de;border-radius:8px;
padding:1rem 1.25rem;margin:1rem 0}.risk{font-weight:700;font-size:1.3rem}
.row{display:flex;gap:1.5rem;align-items:flex-start;flex-wrap:wrap}.fig{flex:1 1 480px}
.fig svg{width:100%;height:auto}.nums{flex:1 1 420px;overflow-x:auto}
table{border-collapse:collapse;font-size:.82rem}td,th{padding:.15rem .5rem;text-align:right;
border-bottom:1px solid #eaeef2}th{background:#f6f8fa}td:first-child,th:first-child{text-align:left}
.muted{color:#57606a;font-size:.85rem}code{font-size:.85em}
.gate{font-weight:700;padding:.35rem .6rem;border-radius:6px;display:inline-block;margin:0}
.gate.fail{color:#fff;background:#cf222e}.gate.pass{color:#1a7f37;background:#dafbe1}
.gate.none{color:#57606a;background:#f6f8fa}
td,th{white-space:nowrap}.row.stacked{flex-direction:column;align-items:stretch}
.row.stacked .fig{flex:0 0 auto;max-width:760px}.row.stacked .nums{flex:0 0 auto}
"""


def _f(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return html.escape(str(value))


def _svg(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(fig)
    text = buf.getvalue()
    return text[text.index("<svg"):]


def _figure(width: float = 6.4, height: float = 3.6) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    plt.rcParams["svg.hashsalt"] = "sdaudit"  # stable element ids: identical reports, same SVG
    plt.rcParams["svg.fonttype"] = "path"  # text as paths: no fonts needed where it is opened
    fig, ax = plt.subplots(figsize=(width, height), dpi=100)
    ax.grid(alpha=0.3)
    return fig, ax


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{_f(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _curve_plot(curves: list[tuple[str, dict[str, Any]]], x_key: str, xlabel: str,
                log_x: bool = False) -> str:
    fig, ax = _figure()
    for label, c in curves:
        x = c[x_key]
        mean = [v if v is not None else math.nan for v in c["accuracy_mean"]]
        ax.plot(x, mean, marker="o", markersize=3, label=f"{label} (AUC {_f(c['auc'])})")
        lo = [v if v is not None else math.nan for v in c["accuracy_ci_low"]]
        hi = [v if v is not None else math.nan for v in c["accuracy_ci_high"]]
        if c.get("draws", 1) > 1:
            ax.fill_between(x, lo, hi, alpha=0.18)
    if log_x:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=8, loc="best")
    return _svg(fig)


def _curve_numbers(c: dict[str, Any], x_key: str, x_label: str) -> str:
    rows = [[c[x_key][i], c["accuracy_mean"][i], c["accuracy_std"][i],
             "–" if c["accuracy_ci_low"][i] is None else
             f"{_f(c['accuracy_ci_low'][i])}–{_f(c['accuracy_ci_high'][i])}",
             c["normalized_mean"][i], c["agreement_mean"][i]] for i in range(len(c[x_key]))]
    return _table([x_label, "accuracy", "s.d.", "95% CI", "normalized", "agreement"], rows)


def _section(title: str, figure: str, numbers: str, note: str = "", stacked: bool = False) -> str:
    """A heading, then the figure and its numbers side by side (``stacked``: the numbers below,
    full width, for tables of long names)."""
    extra = f'<p class="muted">{note}</p>' if note else ""
    row = "row stacked" if stacked else "row"
    return (f"<h2>{html.escape(title)}</h2>{extra}<div class='{row}'><div class='fig'>{figure}"
            f"</div><div class='nums'>{numbers}</div></div>")


def render_report(report: dict[str, Any]) -> str:
    """One scan report as a self-contained HTML page."""
    s = report["summary"]
    parts: list[str] = []
    risk = s.get("risk")
    gate = report["gate"]
    ci = s.get("ablation_auc_ci") or [None, None]
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in s.get("notes", []))
    # A failed gate is red, a passed one green, none grey: the risk colours only the heading.
    gate_class = "none" if not gate.get("checks") else "pass" if gate["passed"] else "fail"
    parts.append(
        f"<div class='verdict'><div class='risk' style='color:{RISK_COLOURS.get(risk, '#57606a')}'>"
        f"Reliance on single directions: {html.escape(str(risk or 'not graded')).upper()}</div>"
        f"<p>Ablation AUC <b>{_f(s.get('ablation_auc'))}</b> (95% CI {_f(ci[0])}–{_f(ci[1])}); "
        f"noise AUC <b>{_f(s.get('noise_auc'))}</b>; unablated accuracy "
        f"<b>{_f(unablated(report)['accuracy'])}</b> on {report['data']['samples']} samples. "
        f"</p><p class='gate {gate_class}'>Gate: {html.escape(gate_text(gate))}</p>"
        f"<p class='muted'>1.0 = removing units changes nothing. Grades: low ≥ "
        f"{s['risk_thresholds']['low']} > medium ≥ {s['risk_thresholds']['medium']} > high; "
        "compare against a sibling model (an earlier checkpoint, another seed) for a firm verdict."
        f"</p>{'<ul>' + notes + '</ul>' if notes else ''}</div>")
    class_names = report["data"].get("class_names") or []
    ablation = report.get("ablation")
    if ablation and ablation.get("fractions"):
        curves = [("all selected layers", ablation)]
        curves += [(name, c) for name, c in ablation.get("per_layer", {}).items()]
        numbers = _curve_numbers(ablation, "fractions", "fraction")
        parts.append(_section("Random ablation: joint and per layer",
                              _curve_plot(curves, "fractions", "fraction of units ablated"),
                              numbers, "Bands: 95% interval over the draws. Numbers: joint curve."))
        class_auc = ablation.get("class_auc") or []
        if class_auc:
            order = sorted(range(len(class_auc)),
                           key=lambda i: (class_auc[i] if class_auc[i] is not None else 9, i))
            fig, ax = _figure(6.4, max(2.4, 0.22 * len(order[:30]) + 1))
            shown = order[:30]
            labels = [class_names[i] if i < len(class_names) else str(i) for i in shown]
            ax.barh(range(len(shown)), [class_auc[i] or 0 for i in shown], color="#0969da")
            ax.set_yticks(range(len(shown)), labels, fontsize=7)
            ax.invert_yaxis()
            ax.set_xlabel("per-class ablation AUC (lower: collapses first)")
            ax.set_xlim(0, 1.05)
            rows = [[labels[j], class_auc[i]] for j, i in enumerate(shown)]
            parts.append(_section("Per-class reliance", _svg(fig), _table(["class", "AUC"], rows),
                                  "Classes whose accuracy falls first under joint random "
                                  "ablation (up to 30, lowest first)."))
        ordered = ablation.get("ordered") or {}
        if ordered:
            labels_of = {"high_to_low": "most selective first", "low_to_high": "least selective first"}
            curves = [("random", ablation)] + [(labels_of.get(k, k), c) for k, c in ordered.items()]
            rows = [[labels_of.get(k, k), c["auc"]] for k, c in ordered.items()]
            parts.append(_section("Ablation ordered by class selectivity",
                                  _curve_plot(curves, "fractions", "fraction of units ablated"),
                                  _table(["order", "AUC"], [["random", ablation["auc"]], *rows])))
    noise = report.get("noise")
    if noise:
        parts.append(_section("Noise scaled to each unit's s.d.",
                              _curve_plot([("noise", noise)], "levels", "α (noise s.d. / unit s.d.)",
                                          log_x=True),
                              _curve_numbers(noise, "levels", "α")))
    layers = report["layers"]
    if any(layer["units"]["selectivity"] for layer in layers):
        fig, ax = _figure()
        # One call: each bin's bars stand side by side, opaque and edged, in the colour cycle
        # (translucent bars drawn over each other blended into one colour).
        with_si = [la for la in layers if la["units"]["selectivity"]]
        ax.hist([[v for v in la["units"]["selectivity"] if v is not None] for la in with_si],
                bins=20, range=(0, 1), label=[la["name"] for la in with_si], edgecolor="white",
                linewidth=0.5)
        ax.set_xlabel("class selectivity index")
        ax.set_ylabel("units")
        ax.legend(fontsize=7)
        rows = [[la["name"], la["channels"], la["selectivity_mean"], la["selectivity_median"],
                 la["selectivity_max"], la["mutual_information_mean"], la["dead_units"]]
                for la in layers]
        parts.append(_section("Class selectivity per layer", _svg(fig),
                              _table(["layer", "units", "mean", "median", "max", "MI (bits)",
                                      "dead"], rows)))
    if any(layer["units"]["importance"] for layer in layers):
        fig, ax = _figure()
        for layer in layers:
            u = layer["units"]
            if u["importance"] and u["selectivity"]:
                rho = _f(layer["importance_selectivity_spearman"], 2)
                ax.scatter(u["selectivity"], u["importance_loss"] or u["importance"], s=8,
                           alpha=0.6, label=f"{layer['name']} (ρ {rho})")
        ax.set_xlabel("class selectivity index")
        ax.set_ylabel("loss rise when the unit alone is ablated")
        ax.legend(fontsize=7)
        rows = [[la["name"], la["importance_selectivity_spearman"]] for la in layers]
        imp = report.get("importance") or {}
        parts.append(_section("Selectivity versus importance", _svg(fig),
                              _table(["layer", "Spearman ρ (SI, loss rise)"],
                                     [*rows, ["all layers", imp.get("spearman_all")]]),
                              "Morcos et al. find little or negative correlation: "
                              "class-selective units are not the important ones."))
    model = report["model"]
    meta = (f"<p class='muted'>Model <code>{html.escape(str(model['path']))}</code> "
            f"(sha256 {html.escape(str(model['sha256'])[:16])}…), data "
            f"<code>{html.escape(str(report['data']['path']))}</code>, "
            f"{html.escape(str(report['runtime']['provider']))}, sdaudit "
            f"{html.escape(str(report['sdaudit_version']))}, report schema "
            f"{html.escape(str(report['schema_version']))}.</p>")
    return _page("sdaudit report", "".join(parts) + meta)


def _page(title: str, body: str) -> str:
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            f"<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>"
            f"<h1>{html.escape(title)}</h1>{body}</body></html>\n")


def render_comparison(ranking: list[dict[str, Any]], warnings: list[str]) -> str:
    """``sdaudit compare`` as a page: AUCs with intervals, best first."""
    fig, ax = _figure(6.4, max(2.4, 0.4 * len(ranking) + 1))
    names = [r["name"] for r in ranking]
    aucs = [r["ablation_auc"] or 0 for r in ranking]
    pairs = list(zip(aucs, ranking, strict=True))
    lo = [max(0.0, a - (r["ci"][0] if r["ci"][0] is not None else a)) for a, r in pairs]
    hi = [max(0.0, (r["ci"][1] if r["ci"][1] is not None else a) - a) for a, r in pairs]
    ax.errorbar(aucs, range(len(ranking)), xerr=[lo, hi], fmt="o", capsize=3)
    ax.set_yticks(range(len(ranking)), names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("ablation AUC (higher: less reliance on single directions)")
    rows = [[r["rank"], r["name"], r["ablation_auc"], f"{_f(r['ci'][0])}–{_f(r['ci'][1])}",
             "yes" if r["overlaps_next"] else "", r["unablated_accuracy"]] for r in ranking]
    warn = "".join(f"<li>{html.escape(w)}</li>" for w in warnings)
    body = ((f"<div class='verdict'><b>Warnings</b><ul>{warn}</ul></div>" if warn else "")
            + _section("Models ranked by ablation AUC", _svg(fig),
                       _table(["rank", "model", "AUC", "95% CI", "overlaps next", "accuracy"],
                              rows),
                       "Neighbours whose intervals overlap are not reliably ordered.",
                       stacked=True))
    return _page("sdaudit compare", body)
