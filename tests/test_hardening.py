"""Bad and hostile input, class by class: every output write is safe, failures are never success, no work
outlives the command, every input is checked against its use, and trust comes only from the keyboard."""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import edgesmith_exe

QUICK = ("edgesmith.zoo:pretrained_digits_cnn", "--dry-run")


# ---- writing an output never destroys anything ---------------------------------------------------


def test_outputs_refuse_fifos_devices_and_symlinks_and_keep_the_users_umask(cli, tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    r = cli("quantize", *QUICK, "--save-recipe", fifo)
    assert r.code == 2 and "not a regular file" in r.stderr and stat.S_ISFIFO(fifo.lstat().st_mode)
    target = tmp_path / "precious.txt"
    target.write_text("keep me")
    link = tmp_path / "link.yaml"
    link.symlink_to(target)
    r = cli("quantize", *QUICK, "--save-recipe", link)
    assert r.code == 2 and "symbolic link" in r.stderr and link.is_symlink() and target.read_text() == "keep me"
    folder = tmp_path / "a-folder"
    folder.mkdir()
    assert cli("quantize", *QUICK, "--save-recipe", folder).code == 2 and folder.is_dir()
    r = cli("quantize", *QUICK, "--save-recipe", tmp_path / "r.yaml")
    assert r.code == 0, r.stderr
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE((tmp_path / "r.yaml").stat().st_mode) == 0o666 & ~umask


def _recipe(tmp_path: Path, out: str, target: str = "x86-avx512-vnni-ort", **extra) -> Path:
    path = tmp_path / f"r-{abs(hash((out, target))) % 10**6}.yaml"
    path.write_text(
        json.dumps(
            {
                "model": {"source": str(tmp_path / "m.onnx")},
                "targets": [target],
                "stop_after": "compile",
                "data": {"calibration": None, "evaluation": None},
                "output_dir": out,
                **extra,
            }
        )
    )
    return path


@pytest.fixture
def onnx_model(tmp_path, digits_onnx):
    (tmp_path / "m.onnx").write_bytes(digits_onnx.read_bytes())


def test_the_output_directory_policy(cli, tmp_path, onnx_model):
    assert "refusing to use / as an output directory" in cli("run", _recipe(tmp_path, "/")).stderr
    other = tmp_path / "not-a-run"
    other.mkdir()
    (other / "thesis.tex").write_text("years of work")
    r = cli("run", _recipe(tmp_path, str(other)))
    assert r.code == 2 and "not an edgesmith run" in r.stderr and "--force" in r.stderr
    assert (other / "thesis.tex").read_text() == "years of work"
    out = tmp_path / "run"
    assert cli("run", _recipe(tmp_path, str(out))).code == 0
    assert (out / "x86-avx512-vnni-ort").is_dir()
    r = cli("run", _recipe(tmp_path, str(out), target="x86-avx512-vnni-ov"))  # an earlier run is replaced whole
    assert r.code == 0, r.stderr
    assert not (out / "x86-avx512-vnni-ort").exists() and (out / "x86-avx512-vnni-ov").is_dir()
    assert set(json.loads((out / "manifest.json").read_text())["targets"]) == {"x86-avx512-vnni-ov"}


def test_force_and_reruns_remove_only_what_edgesmith_wrote(cli, tmp_path, onnx_model):
    other = tmp_path / "mixed"
    (other / "notes").mkdir(parents=True)
    (other / "thesis.tex").write_text("years of work")
    (other / "notes" / "empty-on-purpose").mkdir()
    r = cli("run", _recipe(tmp_path, str(other)), "--force")
    assert r.code == 0, r.stderr
    assert (other / "thesis.tex").read_text() == "years of work" and (other / "notes" / "empty-on-purpose").is_dir()  # --force wrote beside them
    (other / "x86-avx512-vnni-ort" / "my-notes.txt").write_text("mine")  # a user's file inside the run's own folder
    (other / "check").mkdir()
    from edgesmith.outputs import own

    (other / "check" / "summary.md").write_text("an old gate report")
    own(other, [other / "check"])  # what the gate does after writing into a run
    r = cli("run", _recipe(tmp_path, str(other), target="x86-avx512-vnni-ov"))  # replaces the earlier run: its files only
    assert r.code == 0, r.stderr
    assert (other / "thesis.tex").read_text() == "years of work" and (other / "x86-avx512-vnni-ort" / "my-notes.txt").read_text() == "mine"
    assert not (other / "check").exists()  # the old run's gate report went with it
    assert sorted(p.name for p in (other / "x86-avx512-vnni-ort").iterdir()) == ["my-notes.txt"]  # nothing of the old run stays
    (other / "report.md").unlink()
    (other / "report.md").write_text("a user's file where the next run writes its report")
    manifest = json.loads((other / "manifest.json").read_text())
    r = cli("run", _recipe(tmp_path, str(other), target="x86-avx512-vnni-ov"))
    assert r.code == 2 and "not a file edgesmith wrote" in r.stderr, r.stderr
    assert (other / "report.md").read_text() == "a user's file where the next run writes its report"
    assert json.loads((other / "manifest.json").read_text()) == manifest  # the earlier run is untouched


def test_a_folder_being_written_is_locked(cli, tmp_path, onnx_model):
    import fcntl

    out = tmp_path / "run"
    out.mkdir()
    with open(out / ".edgesmith.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        r = cli("run", _recipe(tmp_path, str(out)))
    assert r.code == 2 and "another edgesmith run is writing" in r.stderr


# ---- failure is never success; no work outlives the command ------------------------------------


@pytest.mark.parametrize("where", ["factory module", "metric"])
def test_user_code_cannot_decide_the_exit_code(cli, tmp_path, where):
    (tmp_path / "usercode.py").write_text(
        "import sys\n" + ("sys.exit(0)\n" if where == "factory module" else "") + "from edgesmith.zoo import pretrained_digits_cnn as build\n"
        "def metric(outputs, labels):\n    sys.exit(0)\n"
    )
    args = (
        ("validate", "m.onnx", "-d", "digits", "--metric", "usercode:metric", "--out", "out")
        if where == "metric"
        else ("export", "usercode:build", "--out", "out")
    )
    if where == "metric":
        from edgesmith import pipeline
        from edgesmith.recipe import parse_recipe

        pipeline.run(parse_recipe({"model": {"source": "edgesmith.zoo:pretrained_digits_cnn"}, "stop_after": "export"}), tmp_path, out_dir=tmp_path / "e")
        (tmp_path / "m.onnx").write_bytes((tmp_path / "e" / "model.onnx").read_bytes())
    r = cli(*args)
    assert r.code == 2 and "user code called sys.exit(0)" in r.stderr, (r.code, r.stderr)
    assert not (tmp_path / "out").exists()


def test_sigterm_cleans_up_like_ctrl_c(tmp_path):
    tmp = tmp_path / "tmpdir"
    tmp.mkdir()
    proc = subprocess.Popen(
        [edgesmith_exe(), "demo", "--out", str(tmp_path / "out")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "TMPDIR": str(tmp), "COLUMNS": "200"},
    )
    seen = ""
    deadline = time.time() + 120
    while time.time() < deadline and "checking ONNX Runtime against torch" not in seen:
        line = proc.stderr.readline()
        if not line:
            break
        seen += line
    if proc.poll() is not None:
        pytest.skip("the run finished before the signal could be sent (machine under load)")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143 and "terminated (SIGTERM); no artifact was written" in err, err
    assert not (tmp_path / "out").exists()
    # no work folders left in $TMPDIR (a library's own telemetry marker, .ses, is not ours to judge)
    assert [p.name for p in tmp.iterdir() if "edgesmith" in p.name] == []


def _children(pid: int) -> list[int]:
    out = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
                cmd = (proc / "cmdline").read_bytes()
            except OSError:
                continue
            if int(fields[1]) == pid or b"bench_worker" in cmd and int(fields[1]) == 1:
                out.append(int(proc.name))
    return out


def test_the_benchmark_child_dies_with_its_parent(tmp_path, digits_onnx):
    proc = subprocess.Popen([edgesmith_exe(), "bench", str(digits_onnx), "--duration", "60"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path)
    deadline = time.time() + 60
    kids: list[int] = []
    while time.time() < deadline and not kids:
        kids = [k for k in _children(proc.pid) if b"bench_worker" in Path(f"/proc/{k}/cmdline").read_bytes()]
        time.sleep(0.2)
    assert kids, "the benchmark child never started"
    proc.kill()
    proc.wait()
    deadline = time.time() + 10
    while time.time() < deadline and any(
        Path(f"/proc/{k}").exists() and b"bench_worker" in Path(f"/proc/{k}/cmdline").read_bytes() for k in kids if Path(f"/proc/{k}/cmdline").exists()
    ):
        time.sleep(0.2)
    assert not [k for k in kids if Path(f"/proc/{k}/cmdline").exists() and b"bench_worker" in Path(f"/proc/{k}/cmdline").read_bytes()]


@pytest.mark.parametrize(
    "args",
    [
        ("bench", "m.onnx", "--threads", "10000"),
        ("bench", "m.onnx", "--batch", "0"),
        ("bench", "m.onnx", "--cv", "-1"),
        ("bench", "m.onnx", "--duration", "-1"),
        ("bench", "m.onnx", "--iterations", "0"),
        ("export", "edgesmith.zoo:digits_cnn", "--opset", "99"),
        ("compare", "a.onnx", "b.onnx", "--threads", "0"),
    ],
)
def test_numeric_options_are_range_checked(cli, args):
    r = cli(*args)
    assert r.code == 2 and "Invalid value" in r.stderr


def test_trust_comes_from_the_command_line_never_from_a_file(cli, tmp_path):
    (tmp_path / "r.yaml").write_text("model: {source: edgesmith.zoo:pretrained_digits_cnn, weights: net.pt, trust_checkpoint: true}\n")
    r = cli("run", "r.yaml", "--dry-run")
    assert r.code == 2 and "trust_checkpoint cannot be set in a recipe" in r.stderr
    r = cli("quantize", *QUICK, "--trust-checkpoint", "--save-recipe", tmp_path / "s.yaml")
    assert r.code == 0 and "trust_checkpoint: true" not in (tmp_path / "s.yaml").read_text()


# ---- every input is checked, and the answer is right or refused ---------------------------------


def _npz(tmp_path: Path, name: str, **arrays) -> str:
    np.savez(tmp_path / name, **arrays)
    return name


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (lambda y: y + 5, "but the model has 10 classes"),
        (lambda y: np.eye(10)[y], "one-hot rows?"),
        (lambda y: np.array([str(v) for v in y]), "not integer class indices"),
    ],
)
def test_labels_that_are_not_the_models_classes_are_refused(cli, tmp_path, digits_onnx, digits_test, labels, message):
    x, y = digits_test
    (tmp_path / "m.onnx").write_bytes(digits_onnx.read_bytes())
    data = _npz(tmp_path, "eval.npz", input=x[:64], labels=labels(y[:64]))
    r = cli("validate", "m.onnx", "-d", data, "--out", "out")
    assert r.code == 2 and message in r.stderr, r.stderr
    assert not (tmp_path / "out").exists()


def test_complex_data_is_refused_not_cast(cli, tmp_path, digits_onnx, digits_test):
    x, y = digits_test
    (tmp_path / "m.onnx").write_bytes(digits_onnx.read_bytes())
    data = _npz(tmp_path, "eval.npz", input=x[:32].astype(np.complex64), labels=y[:32])
    r = cli("validate", "m.onnx", "-d", data, "--out", "out")
    assert r.code == 2 and "complex" in r.stderr


def test_a_data_function_that_raises_is_bad_input(cli, tmp_path):
    (tmp_path / "mydata.py").write_text("def batches():\n    raise ValueError('the bucket is gone')\n")
    r = cli("quantize", "edgesmith.zoo:pretrained_digits_cnn", "-d", "mydata:batches", "--out", "out")
    assert r.code == 2 and "data function mydata:batches raised ValueError: the bucket is gone" in r.stderr


def test_an_opset_the_exporter_would_not_write_is_refused(cli, tmp_path):
    r = cli("export", "edgesmith.zoo:pretrained_digits_cnn", "--opset", "13", "--out", "out")
    assert r.code == 2 and "asked for ONNX opset 13, the dynamo exporter wrote opset 18" in r.stderr
    assert not (tmp_path / "out").exists()


def test_export_of_an_onnx_model_says_there_is_nothing_to_export(cli, tmp_path, digits_onnx):
    (tmp_path / "m.onnx").write_bytes(digits_onnx.read_bytes())
    r = cli("export", "m.onnx", "--out", "out")
    assert r.code == 2 and "already ONNX" in r.stderr and not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("recipe", "message"),
    [
        ({"data": {"calibration": {"source": "missing.npz"}}}, "data file not found"),
        ({"model": {"source": "edgesmith.zoo:pretrained_digits_cnn", "weights": "missing.safetensors"}}, "weights not found"),
        ({"model": {"source": "no_such_module_xyz:build"}}, "cannot import 'no_such_module_xyz'"),
        ({"output_dir": "a-file"}, "exists and is not a folder"),
    ],
)
def test_dry_run_checks_every_file_the_recipe_names(cli, tmp_path, recipe, message):
    (tmp_path / "a-file").write_text("x")
    full = {"model": {"source": "edgesmith.zoo:pretrained_digits_cnn"}, "passes": [{"type": "ptq_int8"}], **recipe}
    (tmp_path / "r.yaml").write_text(json.dumps(full))
    r = cli("run", "r.yaml", "--dry-run")
    assert r.code == 2 and message in r.stderr, r.stderr


def test_a_recipe_saved_elsewhere_still_runs(cli, tmp_path, digits_test):
    x, y = digits_test
    _npz(tmp_path, "calib.npz", input=x[:64], labels=y[:64])
    (tmp_path / "elsewhere").mkdir()
    r = cli("quantize", "edgesmith.zoo:pretrained_digits_cnn", "-d", "calib.npz", "--dry-run", "--save-recipe", "elsewhere/deep/r.yaml")
    assert r.code == 0, r.stderr
    r = cli("run", tmp_path / "elsewhere" / "deep" / "r.yaml", "--dry-run", cwd=tmp_path / "elsewhere")
    assert r.code == 0, r.stderr


def test_user_fixable_problems_are_exit_2_not_internal_errors(cli, tmp_path, digits_onnx):
    import onnx
    import torch

    from edgesmith.zoo import digits_cnn

    torch.save(digits_cnn(width=8).state_dict(), tmp_path / "narrow.pt")  # weights of the wrong shape
    r = cli("export", "edgesmith.zoo:pretrained_digits_cnn", "-w", "narrow.pt", "--out", "o1")
    assert r.code == 2 and "weights do not fit the model: size mismatch" in r.stderr, r.stderr
    m = onnx.helper.make_model(
        onnx.helper.make_graph(
            [onnx.helper.make_node("Constant", [], ["y"], value_float=1.0)], "g", [], [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [])]
        ),
        ir_version=10,
    )
    onnx.save(m, tmp_path / "noinputs.onnx")
    r = cli("bench", "noinputs.onnx")
    assert r.code == 2 and "has no inputs" in r.stderr
    (tmp_path / "garbage.xml").write_text("<net><layers>nope")
    r = cli("bench", "garbage.xml")
    assert r.code == 2 and "OpenVINO cannot read garbage.xml" in r.stderr


def test_a_custom_op_reaching_a_quantizer_names_the_lowering(cli, tmp_path):
    from tests.test_custom_ops_and_plugins import _custom_model

    _custom_model(tmp_path / "bin.onnx")
    r = cli("quantize", "bin.onnx", "-d", "digits", "--mode", "static", "--out", "out")
    assert r.code == 2 and "pass 'ptq_int8' cannot process custom ops of domain 'edgesmith'" in r.stderr and "lower_custom_ops" in r.stderr


def test_a_yaml_alias_bomb_is_refused_quickly_and_briefly(cli, tmp_path):
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, cur in zip("abcdefgh", "bcdefghi"):
        lines.append(f"{cur}: &{cur} [{','.join(['*' + prev] * 9)}]")
    lines.append("name: *i")
    (tmp_path / "bomb.yaml").write_text("\n".join(lines) + "\n")
    started = time.time()
    r = cli("run", "bomb.yaml")
    assert r.code == 2 and "YAML aliases" in r.stderr and len(r.stderr) < 1000 and time.time() - started < 30


@pytest.mark.parametrize(
    "text, message",
    [
        ("model: {source: edgesmith.zoo:pretrained_digits_cnn}\nmodel: {source: other.onnx}\n", "key 'model' is given twice \\(lines 1 and 2\\)"),
        ("model: {source: edgesmith.zoo:pretrained_digits_cnn}\npasses:\n  - {type: rtn, bits: 4, bits: 8}\n", "key 'bits' is given twice"),
        ("model: &m {source: edgesmith.zoo:pretrained_digits_cnn, kwargs: {a: *m}}\n", "alias \\*m \\(line 1\\) sits inside its own anchor &m"),
        ("model: {source: edgesmith.zoo:pretrained_digits_cnn}\npasses: &p [{type: rtn}, *p]\n", "sits inside its own anchor &p"),
    ],
    ids=["key-twice", "nested-key-twice", "self-alias-map", "self-alias-list"],
)
def test_yaml_that_says_two_things_or_contains_itself_is_refused(tmp_path, text, message):
    """PyYAML keeps the last of two equal keys without a word, and builds a structure that contains itself from an
    alias inside its own anchor (pydantic then raised 'Circular reference', exit 3)."""
    from edgesmith.errors import ConfigError
    from edgesmith.schema import load_yaml

    (tmp_path / "r.yaml").write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_yaml(tmp_path / "r.yaml", "recipe")


def test_yaml_merge_keys_and_repeated_aliases_still_load(tmp_path):
    from edgesmith.schema import load_yaml

    (tmp_path / "r.yaml").write_text("base: &b {x: 1, y: 2}\nitem:\n  <<: *b\n  y: 3\nagain: *b\n")
    assert load_yaml(tmp_path / "r.yaml", "recipe") == {"base": {"x": 1, "y": 2}, "item": {"x": 1, "y": 3}, "again": {"x": 1, "y": 2}}


def test_long_input_is_never_quoted_in_full(cli, tmp_path):
    (tmp_path / "r.yaml").write_text("model: {source: edgesmith.zoo:pretrained_digits_cnn}\nmetric: " + "x" * 100_000 + "\n")
    r = cli("run", "r.yaml", "--dry-run")
    assert r.code == 2 and len(r.stderr) < 1500


def test_markdown_outputs_escape_names_from_recipes(tmp_path):
    from edgesmith.report import md
    from edgesmith.reporting.document import to_html, to_markdown
    from edgesmith.reporting.runs import runs_report

    assert md("<img src=x onerror=alert(1)>|`x`") == "&lt;img src=x onerror=alert(1)>\\|&#96;x&#96;"
    manifest = {
        "recipe": {"name": "<script>alert(1)</script>", "model": {"source": "a|b"}, "passes": []},
        "verdict": "pass",
        "versions": {},
        "targets": {"<b>t</b>": {"verdict": "pass", "profile": {"description": "<i>x</i>"}, "verdicts": [], "notes": ["node <Conv_0>"], "artifacts": []}},
    }
    doc = runs_report([("run", manifest)])
    text = to_markdown(doc)
    assert "<script>" not in text and "<b>" not in text and "<i>" not in text and "<Conv_0>" not in text
    html = to_html(doc)  # the same model through the HTML writer
    assert "<script>alert" not in html and "<b>t</b>" not in html and "<i>x</i>" not in html and "<Conv_0>" not in html


def test_every_reports_table_rows_keep_their_columns_whatever_the_text():
    """search, optimize and tune write their tables with report.md_row: a label, error or setting with
    pipes, backticks or HTML cannot add a column, close a code span or inject markup."""
    from edgesmith.optimize.search import OptimizeResult, optimize_report
    from edgesmith.profiles import load_profile
    from edgesmith.reporting.document import to_html, to_junit, to_markdown
    from edgesmith.search.report import search_report
    from edgesmith.search.result import SearchResult, TrialRecord

    nasty = "a|b`c<script>"
    bad = TrialRecord(0, {}, nasty, "failed", error=nasty)
    info = {
        "space": ["x"],
        "sampler": "grid",
        "study": "s",
        "storage": "db",
        "new_trials": 1,
        "resumed_trials": 0,
        "seconds": 1.0,
        "trials_per_hour": 1.0,
        "executor": "local",
        "build_seconds": 1.0,
        "timing_seconds": 0.0,
        "batch": 1,
        "cache": {"folder": "cachedir", "hits": 0, "misses": 0, "hit_rate": 0.0},
    }
    prof = load_profile("x86-avx512-vnni-ort")
    text = to_markdown(search_report(SearchResult(__import__("pathlib").Path("."), [bad], [], None, [], "top1", {}, info, "fail"), prof))
    from edgesmith.compress.quantize.policy import Plan

    rows = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| trial")]
    assert rows and all(line.replace("\\|", "").count("|") == 8 for line in rows), rows  # 7 columns
    structure = type("S", (), {"describe": lambda self: "cnn", "kinds": ["cnn"], "as_dict": lambda self: {}})()
    t = TrialRecord(0, {}, nasty, "failed", plan=Plan(nasty, "onnxruntime", "ptq_int8", {"k": nasty}, why=nasty), status="failed", reason=nasty)
    report = optimize_report(OptimizeResult(structure, [t], t, "why", __import__("pathlib").Path("."), 1, "pass", {}, 1.0), prof)
    opt = to_markdown(report)
    rows = [line for line in opt.splitlines() if line.startswith("| ") and not line.startswith("| candidate")]
    assert rows and all(line.replace("\\|", "").count("|") == 11 for line in rows), rows  # 10 columns
    outside_code = __import__("re").sub(r"`[^`]*`", "", text + opt)  # inside a code span HTML is text
    assert "<script>" not in outside_code
    assert "b`c" not in text + opt  # no backtick of the input survives to close a span
    html = to_html(report)  # the same model through the other writers: no markup of the input survives
    assert nasty not in html and "<script>" not in html.replace("<script>window.__errors", "").replace("<script>\ndocument", "")
    import xml.etree.ElementTree as ET

    case = ET.fromstring(to_junit(report)).find("testsuite/testcase")
    assert case is not None and nasty in case.get("name") and case.find("error").get("message") == nasty  # XML-escaped, read back whole


def test_latency_budgets_are_not_judged_on_a_cpu_without_the_profiles_features():
    from edgesmith.evaluate import judge
    from edgesmith.profiles import load_profile

    prof = load_profile("x86-avx512-vnni-ort")
    prof = prof.model_copy(update={"hardware": prof.hardware.model_copy(update={"isa": ["avx2", "edgesmith_imaginary_feature"]})})
    metrics = {"latency_p90_ms@1": 1000.0, "speedup_vs_fp32@1": 0.1, "top1": 99.0, "cosine": 1.0}
    verdicts = {v.metric: v for v in judge(prof, metrics, {"top1": 99.0})}
    assert verdicts["latency_p90_ms"].status == "n/a" and "lacks edgesmith_imaginary_feature" in verdicts["latency_p90_ms"].detail
    assert verdicts["speedup_vs_fp32"].status == "n/a" and verdicts["top1"].status == "pass"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("    raise KeyError('oops')\n", "failed: KeyError"),
        ("    return 'high'\n", "failed: ValueError"),
        ("    return float('nan')\n", "returned a non-finite"),
    ],
)
def test_a_user_metric_that_fails_is_bad_input(tmp_path, body, message):
    from edgesmith.errors import InputError
    from edgesmith.evaluate import task_metrics

    module = f"mymetric_{abs(hash(body))}"
    (tmp_path / f"{module}.py").write_text("def score(outputs, labels):\n" + body)
    sys.path.insert(0, str(tmp_path))
    try:
        from edgesmith.model_io import import_object

        fn = import_object(f"{module}:score", "metric function")
        with pytest.raises(InputError, match=message):
            task_metrics([np.zeros((2, 3))], np.zeros(2, dtype=int), f"{module}:score", fn)
    finally:
        sys.path.remove(str(tmp_path))


@pytest.mark.parametrize(
    "text, secret",
    [
        ("cannot open postgresql://alice:pa55word@db:5432/studies", "pa55word"),
        ("mysql+pymysql://u:p%40ss@h/db", "p%40ss"),
        ("http://h/api?token=abc123&x=1", "abc123"),
        ("connect with password=hunter2 failed", "hunter2"),
        ("cannot reach the Ray cluster at bob:s3cr3t@10.0.0.5:6379", "s3cr3t"),  # no scheme
        ("at 'u:pa:ss@[::1]:6379'", "pa:ss"),
    ],
)
def test_secrets_never_reach_a_message(text, secret):
    from edgesmith.errors import ConfigError, redact

    assert secret not in redact(text) and "***" in redact(text)
    assert secret not in ConfigError(text, hint=f"retry {text}").one_line()
    for plain in ("sqlite:////tmp/study.db and ssh://pi@host:22", "model factory 'pkg.mod:make' on git@github.com:org/repo"):
        assert redact(plain) == plain  # nothing else changes


def test_terminal_control_in_names_and_library_messages_never_reaches_the_terminal(cli, tmp_path):
    """A file name (or a library's coloured message) carrying escape sequences was printed raw: it could retitle
    the terminal, clear it or hide text. Shown as text instead, everywhere edgesmith prints."""
    from edgesmith.errors import InputError, printable

    assert printable("a \x1b[1mbold\x1b[0m \x1b]0;title\x07b\u202ec\x00") == "a bold b\\u202ec\\x00"
    assert printable("tab\tand\nnewline") == "tab\tand\nnewline"  # whitespace is the one-line rule's business
    assert "\x1b" not in InputError("x\x1b[31m", hint="\x1b[2J").one_line()
    evil = tmp_path / "evil\x1b]0;pwned\x07\x1b[2J.onnx"
    evil.write_bytes(b"not a model")
    r = cli("quantize", evil, "-o", tmp_path / "out")
    assert r.code == 2 and len(r.error_lines) == 1, r.stderr
    assert not any(c in r.stderr + r.stdout for c in "\x1b\x07"), repr(r.stderr)


@pytest.mark.parametrize(
    "arrays, message",
    [
        ({"input": np.zeros((0, 1, 8, 8), np.float32), "labels": np.zeros((0,), np.int64)}, "no samples"),
        ({"input": np.zeros((20, 1, 8, 8), np.float32), "labels": np.array(3)}, "labels of shape []"),
        ({"input": np.float32(1.0)}, "single number"),
    ],
)
def test_data_that_holds_no_samples_is_a_user_error_not_a_crash(cli, tmp_path, arrays, message):
    np.savez(tmp_path / "d.npz", **arrays)
    r = cli("quantize", "edgesmith.zoo:pretrained_digits_cnn", "-d", tmp_path / "d.npz", "--out", tmp_path / "o")
    assert r.code == 2 and message in r.stderr and len(r.error_lines) == 1, r.stderr[-800:]
    assert not (tmp_path / "o").exists()


def test_an_interrupt_torch_wrapped_into_an_export_error_stays_an_interrupt():
    from edgesmith.cli.common import Terminated
    from edgesmith.export.onnx_export import reraise_interrupt

    try:
        try:
            raise Terminated()
        except BaseException as inner:
            raise RuntimeError("torch.export failed while tracing") from inner
    except RuntimeError as wrapped:
        with pytest.raises(Terminated):
            reraise_interrupt(wrapped)
    reraise_interrupt(ValueError("an ordinary export error"))  # nothing to re-raise


def test_every_numeric_pass_option_out_of_its_range_is_refused_before_anything_runs(cli, tmp_path):
    """The class, not the examples: for every pass, every count, rate, seed and share (by the option's name) given
    a value outside its range is a ConfigError at validation — 12 passes took some of them and failed mid-run."""
    import dataclasses

    from edgesmith.compress import build_pass_config
    from edgesmith.compress.registry import RANGES, known_passes
    from edgesmith.errors import ConfigError

    required = {"distill": {"student": "edgesmith.zoo:digits_cnn"}}
    bad_value = {"> 0": 0, ">= 0": -1, "in [0, 1]": 1.5}
    checked = []
    for name, info in sorted(known_passes().items()):
        for f in dataclasses.fields(info.config):
            bound = next((b for pattern, b in RANGES if pattern.search(f.name)), None)
            if bound is None:
                continue
            for value in (bad_value[bound], float("nan")):
                with pytest.raises(ConfigError):
                    build_pass_config(name, {**required.get(name, {}), f.name: value})
            checked.append(f"{name}.{f.name}")
    assert len(checked) > 40 and "binarize.mst_every" in checked and "qat.lr" in checked
    with pytest.raises(ConfigError, match=r"recover\.lr must be > 0"):
        build_pass_config("prune_channels", {"ratio": 0.5, "recover": {"lr": 0}})
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "model: {source: edgesmith.zoo:pretrained_digits_cnn}\ninputs: [{name: input, shape: [batch, 1, 8, 8]}]\n"
        "passes: [{type: binarize, mst_every: 0}]\ntargets: [x86-avx512-vnni-ort]\n"
    )
    r = cli("run", recipe, "--dry-run", "--out", tmp_path / "out")
    assert r.code == 2 and len(r.error_lines) == 1 and "pass 'binarize': mst_every must be > 0, got 0 (hint:" in r.error_lines[0], r.stderr


def test_a_terminal_escape_in_a_file_name_never_reaches_the_terminal(cli, tmp_path, digits_onnx):
    """The bench table's title and compare's lines printed the file name as it is: ESC ]0; retitled the terminal."""
    name = "m\x1b]0;owned\x07\x1b[31m.onnx"
    shutil.copyfile(digits_onnx, tmp_path / name)
    for args in (("bench", name, "--iterations", "3", "--warmup", "1"), ("compare", name, name, "--rounds", "2", "--per-round", "1")):
        r = cli(*args)
        assert r.code == 0 and not any(c in r.stdout + r.stderr for c in "\x1b\x07") and "m.onnx" in r.stdout + r.stderr, (args, r.stdout[-600:])


def test_an_openvino_ir_without_inputs_is_refused_by_name(cli, tmp_path):
    """An IR with no Parameter reached the bench worker with no feeds (StopIteration, exit 3)."""
    pytest.importorskip("openvino")
    (tmp_path / "m.xml").write_text('<?xml version="1.0"?><net name="x" version="11"><layers/></net>')
    r = cli("bench", "m.xml", "--iterations", "3")
    assert r.code == 2 and "m.xml has no inputs: there is nothing to feed it" in r.stderr, r.stderr[-500:]
