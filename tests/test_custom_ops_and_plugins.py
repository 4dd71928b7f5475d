"""The custom-op route (a domain op + standard lowering + per-runtime registration, applied by compile,
bench's child, validate and the device bundle) and plugins loaded from a real installed distribution."""

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from edgesmith.errors import BackendUnavailable
from tests.conftest import NO_SPEEDUP_BUDGET


def _custom_model(path: Path) -> Path:
    """x -> Conv -> edgesmith.BinarySign(alpha 0.5) -> Flatten -> Gemm: a tiny binary-activation net."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from edgesmith.runtime.ops.binary_sign import make_node

    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.standard_normal((4, 1, 3, 3)).astype(np.float32), "w"),
        numpy_helper.from_array(rng.standard_normal((10, 4 * 6 * 6)).astype(np.float32), "fc"),
        numpy_helper.from_array(np.zeros(10, np.float32), "fcb"),
    ]
    nodes = [
        helper.make_node("Conv", ["input", "w"], ["c"]),
        make_node("c", "s", 0.5),
        helper.make_node("Flatten", ["s"], ["f"]),
        helper.make_node("Gemm", ["f", "fc", "fcb"], ["logits"], transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "binary",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 1, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("edgesmith", 1)], ir_version=10)
    onnx.save(model, str(path))
    return path


def test_custom_op_runs_on_both_runtimes_and_equals_its_lowering(tmp_path):
    from edgesmith.runtime import get_backend
    from edgesmith.runtime.custom_ops import custom_domains, lower_file

    src = _custom_model(tmp_path / "bin.onnx")
    lowered = tmp_path / "lowered.onnx"
    assert lower_file(src, lowered) == ["edgesmith"]
    import onnx

    assert custom_domains(onnx.load(str(lowered))) == {}
    x = np.random.default_rng(1).standard_normal((5, 1, 8, 8)).astype(np.float32)
    outs = {}
    for name, path in (("ort", src), ("ort-lowered", lowered)):
        ort = get_backend("onnxruntime")
        outs[name] = ort.load(ort.compile(path, tmp_path / f"{name}.onnx", None), 1).run({"input": x})[0]
    from edgesmith.profiles import load_profile

    ov = get_backend("openvino")  # f32 inference precision pinned by the profile (bf16 otherwise on this CPU)
    outs["openvino"] = ov.load(ov.compile(src, tmp_path / "bin.xml", load_profile("x86-avx512-vnni-ov")), 1).run({"input": x})[0]
    np.testing.assert_allclose(outs["ort"], outs["ort-lowered"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(outs["openvino"], outs["ort-lowered"], rtol=1e-4, atol=1e-4)


def test_a_runtime_without_the_registration_names_the_lowering(tmp_path):
    from edgesmith.runtime.custom_ops import apply_registrations

    src = _custom_model(tmp_path / "bin.onnx")
    with pytest.raises(BackendUnavailable, match="tensorrt has no registration for custom op domain 'edgesmith'.*lower_custom_ops"):
        apply_registrations("tensorrt", None, src)


@pytest.mark.slow
def test_custom_op_model_through_run_bench_and_the_device_bundle(tmp_path, cli):
    _custom_model(tmp_path / "bin.onnx")
    x = np.random.default_rng(2).standard_normal((40, 1, 8, 8)).astype(np.float32)
    np.savez(tmp_path / "eval.npz", input=x)
    recipe = {
        "model": {"source": "bin.onnx"},
        "data": {"evaluation": {"source": "eval.npz"}},
        "metric": "fidelity",
        "targets": [{"profile": p, "budgets": NO_SPEEDUP_BUDGET, "batch_sizes": [1]} for p in ("x86-avx512-vnni-ort", "x86-avx512-vnni-ov")],
        "passes": [],
        "output_dir": "out",
        "bench": {"iterations": 20, "warmup": 2},
    }
    (tmp_path / "r.yaml").write_text(json.dumps(recipe))
    r = cli("run", "r.yaml")
    assert r.code == 0, r.stderr
    r = cli("validate", "out", "--json")  # the device bundle, re-validated with the registration applied
    assert r.code == 0, r.stderr
    assert all(t["metrics"]["cosine"] > 0.9999 for t in json.loads(r.stdout)["targets"].values())
    r = cli("bench", "bin.onnx", "--iterations", "5", "--json")  # the benchmark child registers the op too
    assert r.code == 0, r.stderr
    lowered = {**recipe, "passes": [{"type": "lower_custom_ops"}], "targets": recipe["targets"][:1], "output_dir": "low"}
    (tmp_path / "l.yaml").write_text(json.dumps(lowered))
    r = cli("run", "l.yaml")
    assert r.code == 0, r.stderr
    import onnx

    art = next((tmp_path / "low").rglob("model.lowered.onnx"))
    assert all(n.domain != "edgesmith" for n in onnx.load(str(art)).graph.node)


def _distribution(site: Path, dist: str, module: str, body: str, entry: str) -> None:
    """A real installed distribution: a module plus its .dist-info with entry_points.txt."""
    (site / f"{module}.py").write_text(body)
    info = site / f"{dist.replace('-', '_')}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[edgesmith.passes]\n{entry}\n")
    (info / "RECORD").write_text("")


PASS_BODY = """from dataclasses import dataclass
from edgesmith.compress.registry import PassInfo

@dataclass(frozen=True)
class Cfg:
    pass

def apply(model, cfg, ctx):
    return model

PASS = PassInfo("{name}", "onnx", Cfg, apply, "{summary}")
"""


@pytest.mark.slow
def test_plugins_from_real_distributions_cannot_hurt_the_host(tmp_path, cli):
    site = tmp_path / "site"
    site.mkdir()
    _distribution(site, "good-plugin", "goodplug", PASS_BODY.format(name="good_pass", summary="a plugin pass"), "good_pass = goodplug:PASS")
    _distribution(site, "broken-plugin", "badplug", "raise ImportError('needs libfoo')\n", "bad_pass = badplug:PASS")
    _distribution(site, "exiting-plugin", "exitplug", "import sys\nsys.exit(0)\n", "exit_pass = exitplug")
    _distribution(site, "clash-a", "clasha", PASS_BODY.format(name="clash", summary="a"), "clash = clasha:PASS")
    _distribution(site, "clash-b", "clashb", PASS_BODY.format(name="clash", summary="b"), "clash = clashb")
    env = {"PYTHONPATH": os.pathsep.join([str(site), *sys.path])}
    r = cli("passes", env=env)
    assert r.code == 0, r.stderr
    assert "good_pass  [onnx]  a plugin pass  (plugin: distribution 'good-plugin')" in r.stdout
    assert "BROKEN plugin 'bad_pass' from broken-plugin: ImportError: needs libfoo" in r.stdout
    assert "BROKEN plugin 'exit_pass' from exiting-plugin: SystemExit" in r.stdout
    assert "CONFLICT pass 'clash' is claimed by distribution 'clash-a' and distribution 'clash-b'" in r.stdout
    assert "ptq_int8  [onnx]" in r.stdout  # the built-ins are all still there
    assert cli("--help", env=env).code == 0 and cli("profiles", "list", env=env).code == 0
    (tmp_path / "r.yaml").write_text(json.dumps({"model": {"source": "m.onnx"}, "passes": [{"type": "clash"}]}))
    r = cli("run", "r.yaml", "--dry-run", env=env)
    assert r.code == 2 and "claimed by more than one package: distribution 'clash-a' and distribution 'clash-b'" in r.stderr


BACKEND_BODY = """from pathlib import Path
import numpy as np
from edgesmith.runtime.base import Artifact, MeasuredInChild


class Session:
    input_names = ["x"]
    output_names = ["y"]

    def run(self, feeds):
        return [np.asarray(feeds["x"]) * 2.0]

    def bind(self, feeds):
        x = feeds["x"]
        return lambda: x * 2.0


class Doubler(MeasuredInChild):
    name = "doubler"
    artifact_suffix = ".dbl"

    def available(self):
        return True

    def input_specs(self, path):
        return [{"name": "x", "shape": ["batch", 4], "dtype": "float32"}]

    def default_options(self):
        return {}

    def compile(self, onnx_path, out_path, profile, input_specs=(), calibration=None):
        Path(out_path).write_bytes(b"dbl")
        return Artifact(Path(out_path), self.name, {})

    def load(self, artifact, threads):
        return Session()


BACKEND = Doubler()
"""


def test_a_plugin_backend_is_benched_in_the_worker_process(tmp_path, cli):
    site = tmp_path / "site"
    site.mkdir()
    _distribution(site, "doubler-backend", "doublerplug", BACKEND_BODY, "doubler = doublerplug:BACKEND")
    info = next(site.glob("doubler_backend-*.dist-info"))
    (info / "entry_points.txt").write_text("[edgesmith.backends]\ndoubler = doublerplug:BACKEND\n")
    (tmp_path / "model.dbl").write_bytes(b"dbl")
    env = {"PYTHONPATH": os.pathsep.join([str(site), *sys.path])}
    r = cli("bench", tmp_path / "model.dbl", "--backend", "doubler", "--iterations", "20", "--json", env=env)
    assert r.code == 0, r.stderr[-1500:]
    assert json.loads(r.stdout)[0]["p50_ms"] >= 0
