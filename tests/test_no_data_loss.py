"""Nothing a user gave is modified or lost: write targets that are inputs, the same as another
output, or not regular files are refused before any work (exit 2), and a run's outputs are
committed together. Through the real entry point (``sdaudit.cli.app.run``), with the checksum
of every file in the folder before and after."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import models
import pytest

from sdaudit.cli.app import run

FAST = ["--measure", "ablation", "--draws", "1", "--no-per-layer", "-q"]


def snapshot(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder`` (hidden ones included), by relative path."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and not p.is_symlink()}


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """A model with external weights, its data, a second data set, a loader script, class names,
    labels, and an earlier report of the same model."""
    d = tmp_path_factory.mktemp("inputs")
    models.save(models.counting_net(), d / "m.onnx", external=True)
    models.counting_data(d / "d.npz")
    models.counting_data(d / "sel.npz", per_class=20)
    (d / "load.py").write_text("import numpy as np\n\ndef load_data():\n"
                               "    yield np.ones((4, 1), np.float32), np.zeros(4, np.int64)\n")
    (d / "names.txt").write_text("one\ntwo\n")
    (d / "labels.txt").write_text("a.png 0\n")
    assert run(["scan", str(d / "m.onnx"), "--data", str(d / "d.npz"), "--json",
                str(d / "old.json"), *FAST]) == 0
    return d


@pytest.fixture
def work(base, tmp_path, monkeypatch) -> Path:
    for p in base.iterdir():
        shutil.copy2(p, tmp_path / p.name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def scan_args(extra: list[str]) -> list[str]:
    return ["scan", "m.onnx", "--data", "d.npz", *FAST, *extra]


def refused(capsys, argv: list[str], folder: Path, *words: str) -> str:
    before = snapshot(folder)
    code = run(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err
    for word in words:
        assert word in err, err
    assert snapshot(folder) == before  # nothing changed, nothing new (no temporary file either)
    return err


@pytest.mark.parametrize(("extra", "flags"), [
    (["--selectivity-data", "sel.npz", "--json", "sel.npz"], ("--json", "--selectivity-data")),
    (["--json", "m.onnx.data"], ("--json", "external data of MODEL")),
    (["--json", "m.onnx"], ("--json", "MODEL")),
    (["--html", "d.npz"], ("--html", "--data")),
    (["--labels", "labels.txt", "--html", "labels.txt"], ("--html", "--labels")),
    (["--class-names", "names.txt", "--json", "names.txt"], ("--json", "--class-names")),
    (["--baseline", "old.json", "--json", "old.json"], ("--json", "--baseline")),
    (["--baseline", "old.json", "--html", "./old.json"], ("--html", "--baseline")),
    (["--json", "r.json", "--html", "r.json"], ("--html", "--json")),
    (["--json", "r.json", "--html", "./r.json"], ("--html", "--json")),
], ids=["selectivity-data", "external-data", "model", "data", "labels", "class-names",
        "baseline", "baseline-dot-slash", "json-is-html", "json-is-html-dot-slash"])
def test_an_output_that_is_an_input_or_another_output_is_refused(work, capsys, extra, flags):
    refused(capsys, scan_args(extra), work, *flags)


def test_the_loader_script_is_protected(work, capsys):
    refused(capsys, ["scan", "m.onnx", "--data-loader-script", "load.py:load_data", *FAST,
                     "--html", "load.py"], work, "--html", "--data-loader-script")


def test_links_are_followed(work, capsys):
    os.link(work / "sel.npz", work / "hard.json")
    (work / "soft.json").symlink_to(work / "d.npz")
    (work / "sub").mkdir()
    (work / "sub" / "up.json").symlink_to("../m.onnx.data")
    refused(capsys, scan_args(["--selectivity-data", "sel.npz", "--json", "hard.json"]), work,
            "--selectivity-data")
    refused(capsys, scan_args(["--json", "soft.json"]), work, "--data")
    refused(capsys, scan_args(["--html", "sub/up.json"]), work, "external data")
    refused(capsys, scan_args(["--json", "soft.json", "--html", "d.npz"]), work, "--data")


def test_a_folder_a_fifo_or_a_link_to_one_is_refused(work, capsys):
    os.mkfifo(work / "pipe")
    (work / "to-pipe.json").symlink_to(work / "pipe")
    (work / "folder").mkdir()
    refused(capsys, scan_args(["--json", "r.json", "--html", "folder"]), work, "--html",
            "a folder")
    refused(capsys, scan_args(["--json", "pipe"]), work, "a fifo")
    refused(capsys, scan_args(["--html", "to-pipe.json"]), work, "a fifo")
    assert not (work / "r.json").exists()


def test_a_device_is_refused_before_anything_is_written():
    """Checked on the plan alone: a regression must not get the chance to replace /dev/null."""
    from sdaudit.errors import BadFlagError
    from sdaudit.paths import PathPlan, Use

    with pytest.raises(BadFlagError, match="a device"):
        PathPlan((), (Use("--json", Path(os.devnull)),)).check()


def test_a_missing_folder_is_refused(work, capsys):
    refused(capsys, scan_args(["--json", "r.json", "--html", "nowhere/r.html"]), work,
            "--html", "does not exist")


def test_compare_never_overwrites_its_reports(work, capsys):
    shutil.copy(work / "old.json", work / "other.json")
    refused(capsys, ["compare", "old.json", "other.json", "--html", "old.json"], work,
            "--html", "REPORT")
    assert run(["compare", "old.json", "other.json", "--html", "c.html"]) == 0


def test_instrument_never_overwrites_the_model_or_its_weights(work, capsys):
    refused(capsys, ["instrument", "m.onnx", "-o", "m.onnx.data"], work, "--output",
            "external data of MODEL")
    (work / "alias.onnx").symlink_to("m.onnx")
    refused(capsys, ["instrument", "m.onnx", "-o", "alias.onnx"], work, "--output", "MODEL")


def test_a_failed_render_leaves_no_file_and_earlier_files_whole(work, capsys, monkeypatch):
    from sdaudit.report import html

    (work / "r.json").write_text("earlier")

    def broken(*_args, **_kwargs):
        raise RuntimeError("simulated renderer bug")

    monkeypatch.setattr(html, "render_report", broken)
    before = snapshot(work)
    code = run(scan_args(["--json", "r.json", "--html", "r.html"]))
    capsys.readouterr()
    assert code == 3
    assert snapshot(work) == before


def test_a_failed_rename_puts_back_what_was_replaced(work, capsys, monkeypatch):
    """The second of two renames fails: the first file is restored, the second never appears."""
    (work / "r.json").write_text("earlier")
    real, calls = os.replace, []

    def flaky(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return real(src, dst)

    monkeypatch.setattr(os, "replace", flaky)
    before = snapshot(work)
    err = refused(capsys, scan_args(["--json", "r.json", "--html", "r.html"]), work, "--html",
                  "No space left")
    assert "cannot write" in err
    assert snapshot(work) == before


def test_outputs_are_written_whole_and_replaced_files_keep_their_mode(work, capsys):
    import json
    import stat

    (work / "r.json").write_text("earlier")
    (work / "r.json").chmod(0o640)
    before = snapshot(work)
    assert run(scan_args(["--json", "r.json", "--html", "r.html"])) == 0
    capsys.readouterr()
    after = snapshot(work)
    assert {k for k in after if before.get(k) != after[k]} == {"r.json", "r.html"}
    assert json.loads((work / "r.json").read_text())["schema_version"].startswith("1.")
    assert stat.S_IMODE((work / "r.json").stat().st_mode) == 0o640


def test_writing_through_a_link_keeps_the_link(work, capsys):
    (work / "reports").mkdir()
    (work / "reports" / "r.json").write_text("earlier")
    (work / "latest.json").symlink_to("reports/r.json")
    assert run(scan_args(["--json", "latest.json"])) == 0
    capsys.readouterr()
    assert (work / "latest.json").is_symlink()
    assert (work / "reports" / "r.json").read_text().startswith("{")


# -- property: random collisions between what a scan reads and what it writes -------------------

OPTIONAL_READS = {"--selectivity-data": "sel.npz", "--class-names": "names.txt",
                  "--baseline": "old.json"}
ALWAYS_READ = ("m.onnx", "m.onnx.data", "d.npz")  # MODEL, its external data, --data
CANDIDATES = (*ALWAYS_READ, *OPTIONAL_READS.values(), "prev.json")  # prev.json: read by nothing


def _target(folder: Path, choice: tuple[str, str], tag: str, other: Path | None) -> Path:
    """An output path: a new name, or an existing file named directly, with ./, through a
    symbolic link or a hard link (``other``: the other output's path, for "same as it")."""
    what, how = choice
    if what == "new":
        return Path(f"new-{tag}.out")
    name = str(other) if what == "other" and other is not None else what
    if what == "other" and other is None:
        return Path(f"new-{tag}.out")
    if how == "dot":
        return Path("./" + name)
    if how in ("symlink", "hardlink") and (folder / name).exists():
        link = Path(f"{how}-{tag}.out")
        (folder / link).symlink_to(name) if how == "symlink" else os.link(folder / name,
                                                                         folder / link)
        return link
    return Path(name)


def _key(folder: Path, path: Path) -> tuple[int, int] | str:
    full = folder / path
    if full.exists():
        st = full.stat()
        return (st.st_dev, st.st_ino)
    return str(full.resolve())


def test_random_collisions_refuse_or_write_only_new_content(base):
    """For random choices of which inputs and outputs collide (names, ./names, symbolic and hard
    links): either exit 2 with every file as it was, or exit 0 with only the outputs changed."""
    import tempfile

    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    target = st.tuples(st.sampled_from(("new", "other", *CANDIDATES)),
                       st.sampled_from(("plain", "dot", "symlink", "hardlink")))

    @settings(max_examples=25, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow])
    @given(flags=st.sets(st.sampled_from(sorted(OPTIONAL_READS))),
           json_choice=st.none() | target, html_choice=st.none() | target)
    def check(flags, json_choice, html_choice):
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            for p in base.iterdir():
                shutil.copy2(p, folder / p.name)
            (folder / "prev.json").write_text("an earlier file")
            json_path = None if json_choice is None else _target(folder, json_choice, "json", None)
            html_path = (None if html_choice is None
                         else _target(folder, html_choice, "html", json_path))
            reads = [*ALWAYS_READ, *(OPTIONAL_READS[f] for f in flags)]
            read_keys = {_key(folder, Path(r)) for r in reads}
            outs = [p for p in (json_path, html_path) if p is not None]
            out_keys = [_key(folder, p) for p in outs]
            collide = (any(k in read_keys for k in out_keys)
                       or len(set(out_keys)) < len(out_keys))
            argv = ["scan", str(folder / "m.onnx"), "--data", str(folder / "d.npz"), *FAST]
            for f in sorted(flags):
                argv += [f, str(folder / OPTIONAL_READS[f])]
            if json_path is not None:
                argv += ["--json", str(folder / json_path)]
            if html_path is not None:
                argv += ["--html", str(folder / html_path)]
            before = snapshot(folder)
            code = run(argv)
            after = snapshot(folder)
            if collide:
                assert code == 2
                assert after == before
                return
            assert code == 0
            written = {str((folder / p).resolve().relative_to(folder.resolve())) for p in outs}
            changed = {k for k in after if before.get(k) != after[k]}
            assert changed <= written
            assert set(before) <= set(after)
            for k in set(before) - written:
                assert after[k] == before[k]

    check()


def test_an_identical_rerun_passes_its_own_baseline(work, capsys):
    """The baseline's AUC is stored to 7 digits; the rerun is compared at that precision."""
    assert run(scan_args(["--baseline", "old.json"])) == 0
    capsys.readouterr()


@pytest.mark.parametrize(("change", "words"), [
    ({"schema_version": "2.0"}, ("schema 2.0", "reads schema 1.x")),
    ({"schema_version": "one"}, ("schema one",)),
    ({"summary": {"ablation_auc": "high"}}, ("summary.ablation_auc has the wrong type",)),
    ({"model": {"sha256": "x"}}, ("no model.path",)),
    ({"baseline": None}, ("no baseline",)),
    ({"summary": {"ablation_auc_ci": [0.5]}}, ("ablation_auc_ci is not two numbers",)),
])
def test_baseline_and_compare_share_one_checked_reader(work, capsys, change, words):
    """A report of another major version (or with fields of the wrong type) is refused the same
    way by --baseline and by compare."""
    import json

    data = json.loads((work / "old.json").read_text())
    for key, value in change.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict) and key != "model":
            data[key].update(value)
        else:
            data[key] = value
    (work / "odd.json").write_text(json.dumps(data))
    for argv, flag in ((scan_args(["--baseline", "odd.json"]), "--baseline"),
                       (["compare", "old.json", "odd.json"], "report")):
        err = refused(capsys, argv, work, f"{flag} 'odd.json'", *words)
        assert "sdaudit scan" in err


def test_the_graph_is_parsed_only_where_an_output_could_meet_its_weights(base, tmp_path,
                                                                          monkeypatch):
    """External data lie in the model's folder: an output elsewhere costs no parse of the model."""
    import onnx

    from sdaudit.paths import Use, model_reads

    calls, real = [], onnx.load
    monkeypatch.setattr(onnx, "load", lambda *a, **k: calls.append(a) or real(*a, **k))
    (tmp_path / "r.json").write_text("elsewhere")
    assert model_reads(base / "m.onnx", (Use("--json", tmp_path / "r.json"),)) == (
        Use("MODEL", base / "m.onnx"),)
    assert calls == []
    uses = model_reads(base / "m.onnx", (Use("--json", base / "old.json"),))
    assert [u.path.name for u in uses] == ["m.onnx", "m.onnx.data"]
    assert len(calls) == 1
