"""A scan that cannot finish still hands CI a valid JUnit or Markdown document (exit 2, 3, 143)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import models
import pytest
from test_ci_output import sdaudit


def error_case(stdout: str) -> ET.Element:
    """The one test case of a JUnit error document, after checking the document's counts."""
    suites = ET.fromstring(stdout)
    assert suites.tag == "testsuites"
    assert (suites.get("tests"), suites.get("errors"), suites.get("failures")) == ("1", "1", "0")
    suite = suites.find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("errors"), suite.get("failures")) == ("1", "1", "0")
    cases = list(suite.iter("testcase"))
    assert len(cases) == 1
    error = cases[0].find("error")
    assert error is not None
    return error


@pytest.fixture
def model(tmp_path):
    return models.save(models.counting_net(), tmp_path / "m.onnx")


def test_junit_on_bad_data_names_the_error(model, tmp_path):
    result = sdaudit("scan", str(model), "--data", str(tmp_path / "missing.npz"), "--format",
                     "junit")
    assert result.returncode == 2
    error = error_case(result.stdout)
    assert error.get("type") == "could not run"
    assert "missing.npz" in error.get("message", "")
    assert error.get("message") == result.stderr.strip()  # the same line as on stderr
    assert "exited with 2" in (error.text or "")


def test_junit_on_a_flag_typer_rejects(model):
    result = sdaudit("scan", str(model), "--draws", "many", "--format=junit")
    assert result.returncode == 2
    assert "--draws" in error_case(result.stdout).get("message", "")


def test_markdown_on_exit_2_says_what_failed(model, tmp_path):
    result = sdaudit("scan", str(model), "--data", str(tmp_path / "missing.npz"), "--format",
                     "markdown")
    assert result.returncode == 2
    lines = result.stdout.splitlines()
    assert lines[0] == "### sdaudit: reliance on single directions — ⚠️ could not run (exit 2)"
    assert result.stderr.strip() in lines  # the error itself, in a code block
    assert result.stdout.count("```") == 2


def test_junit_on_an_internal_error(model, tmp_path, monkeypatch, capsys):
    """exit 3: the bug's type and first line, and the pointer to the traceback on stderr."""
    import sdaudit.api
    from sdaudit.cli.app import run

    def broken(*args, **kwargs):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(sdaudit.api, "audit", broken)
    data = models.counting_data(tmp_path / "d.npz")
    assert run(["scan", str(model), "--data", str(data), "--format", "junit", "-q"]) == 3
    captured = capsys.readouterr()
    error = error_case(captured.out)
    assert error.get("type") == "internal error"
    assert error.get("message") == ("sdaudit: internal error (ZeroDivisionError: a bug); the "
                                    "traceback is on stderr")
    assert "Traceback" in captured.err


def test_sigterm_exits_143_with_a_junit_document(model, tmp_path):
    """A CI timeout sends SIGTERM while the data loads: exit 143, and still a document."""
    marker = tmp_path / "started"
    script = tmp_path / "slow.py"
    script.write_text(
        "import time\nfrom pathlib import Path\n\n\ndef load_data():\n"
        f"    Path({str(marker)!r}).touch()\n    time.sleep(60)\n    return []\n")
    proc = subprocess.Popen([sys.executable, "-m", "sdaudit", "scan", str(model),
                             "--data-loader-script", str(script), "--format", "junit", "-q"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not marker.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert marker.exists(), proc.communicate()[1]
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert err.strip().endswith("sdaudit: terminated")
    assert error_case(out).get("type") == "terminated"


def test_other_formats_write_nothing_on_errors(model, tmp_path):
    result = sdaudit("scan", str(model), "--data", str(Path(tmp_path) / "missing.npz"),
                     "--format", "json")
    assert result.returncode == 2
    assert result.stdout == ""  # no JSON that a pipeline could take for a report
