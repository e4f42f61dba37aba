"""HTML, JUnit and Markdown reports, and `sdaudit compare`."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import models
import numpy as np
import pytest
from conftest import SAMPLES


@pytest.fixture(scope="module")
def cnn_report(tmp_path_factory):
    """A full scan of the sample CNN (all measurements), as JSON and HTML."""
    from sdaudit.cli.app import run

    out = tmp_path_factory.mktemp("report")
    code = run(["scan", str(SAMPLES / "digits-cnn.onnx"), "--data", str(SAMPLES / "digits-train.npz"),
                "--draws", "3", "--max-samples", "400", "--json", str(out / "r.json"),
                "--html", str(out / "r.html"), "-q", "--format", "json"])
    assert code == 0
    return out


def test_html_is_self_contained(cnn_report):
    page = (cnn_report / "r.html").read_text()
    assert page.startswith("<!DOCTYPE html>")
    for needle in ("<script", "<link", "src=", "@import"):
        assert needle not in page
    # The only url() references are the SVGs' own clip paths (#ids inside the page).
    assert re.findall(r"url\((?!#)", page) == []
    # Joint and per-layer random ablation (one figure), per-class reliance, ordered ablation,
    # noise, selectivity histograms and the selectivity–importance scatter: six figures.
    assert page.count("<svg") == 6
    assert "Reliance on single directions" in page


def test_html_renders_in_headless_chromium(cnn_report, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed (.ci/run installs Debian's chromium)")
    flags = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}", "--hide-scrollbars"]
    url = (cnn_report / "r.html").as_uri()
    dom = subprocess.run([*flags, "--dump-dom", url], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    assert dom.count("<svg") == 6
    shot = tmp_path / "page.png"
    subprocess.run([*flags, "--window-size=1200,4200", f"--screenshot={shot}", url],
                   capture_output=True, timeout=120, check=True)
    from PIL import Image

    img = np.asarray(Image.open(shot).convert("L"), dtype=np.float32)
    assert img.shape == (4200, 1200)
    # The plots are drawn: many pixel rows hold dark pixels (axes, lines, text).
    rows_with_ink = np.flatnonzero((img < 128).sum(axis=1) > 20)
    assert len(rows_with_ink) > 600
    assert rows_with_ink.max() > 2500  # the last figures are drawn too, far down the page


def test_junit_and_markdown_formats(runner, app, tmp_path):
    model = models.save(models.counting_net(), tmp_path / "m.onnx")
    data = models.counting_data(tmp_path / "d.npz")
    base = ["scan", str(model), "--data", str(data), "-q", "--measure", "ablation"]
    result = runner.invoke(app, [*base, "--format", "junit", "--fail-under", "0.99"])
    assert result.exit_code == 1
    suite = ET.fromstring(result.stdout)
    assert suite.get("failures") == "1"
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    assert set(cases) == {"audit", "fail_under"}
    assert cases["fail_under"].find("failure") is not None
    assert cases["audit"].find("failure") is None
    result = runner.invoke(app, [*base, "--format", "markdown"])
    assert result.exit_code == 0
    assert result.stdout.startswith("### sdaudit")
    assert "| ablation AUC |" in result.stdout


def _report(tmp_path, name: str, threshold: float) -> str:
    """Counting nets whose AUC is known in closed form: a higher threshold fails sooner."""
    from sdaudit.cli.app import run

    model = models.save(models.counting_net(threshold=threshold), tmp_path / f"{name}.onnx")
    data = models.counting_data(tmp_path / "d.npz")
    out = tmp_path / f"{name}.json"
    assert run(["scan", str(model), "--data", str(data), "-q", "--measure", "ablation",
                "--json", str(out), "--format", "json"]) == 0
    return str(out)


def test_compare_ranks_best_first(runner, app, tmp_path, capsys):
    reports = [_report(tmp_path, name, t) for name, t in (("mid", 4.5), ("good", 1.5),
                                                          ("bad", 8.5))]
    capsys.readouterr()
    result = runner.invoke(app, ["compare", *reports, "--format", "json",
                                 "--html", str(tmp_path / "c.html")])
    assert result.exit_code == 0, result.output
    ranking = json.loads(result.stdout)["ranking"]
    assert [e["name"] for e in ranking] == ["good.onnx", "mid.onnx", "bad.onnx"]
    assert [e["rank"] for e in ranking] == [1, 2, 3]
    assert all(e["report"].endswith(".json") for e in ranking)
    # Deterministic nets: zero-width intervals, so no neighbours overlap.
    assert not any(e["overlaps_next"] for e in ranking)
    assert (tmp_path / "c.html").read_text().count("<svg") == 1
    text = runner.invoke(app, ["compare", *reports])
    assert text.exit_code == 0
    assert "good.onnx" in text.stdout


def test_compare_warns_about_different_settings(runner, app, tmp_path, capsys):
    a = _report(tmp_path, "a", 4.5)
    b_path = tmp_path / "b.json"
    data = json.loads(Path(a).read_text())
    data["config"]["fractions"] = [0.0, 0.5]
    b_path.write_text(json.dumps(data))
    capsys.readouterr()
    result = runner.invoke(app, ["compare", a, str(b_path)])
    assert result.exit_code == 0
    assert "other settings" in result.stderr


def test_compare_refuses_what_is_not_a_report(runner, app, tmp_path):
    bad = tmp_path / "x.json"
    bad.write_text('{"hello": 1}')
    result = runner.invoke(app, ["compare", str(bad)])
    assert result.exit_code == 2
    assert "not an sdaudit report" in result.stderr
