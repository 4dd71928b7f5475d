"""Real models in with no glue: Transformers and sentence-transformers folders, TorchScript archives, .pt2 programs,
in-memory modules and transformers objects; input and output names kept end to end."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow


def _onnx_io(path: Path) -> tuple[list, list]:
    import onnx

    m = onnx.load(str(path), load_external_data=False)
    dims = lambda v: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]  # noqa: E731
    return [(i.name, dims(i)) for i in m.graph.input], [(o.name, dims(o)) for o in m.graph.output]


def test_transformers_folder_quantized_from_paths_alone(cli, tmp_path, bert_folder, reviews_jsonl):
    """`quantize FOLDER -d FILE.jsonl`: inputs from the tokenizer, outputs named logits, string labels mapped through
    id2label, one file split into calibration and evaluation; the run folder holds no copy of the data beyond the bundle."""
    r = cli("quantize", bert_folder, "-d", reviews_jsonl, "--calibration-samples", "16", "-o", tmp_path / "q")
    assert r.code in (0, 1), r.stderr[-1500:]
    manifest = json.loads((tmp_path / "q" / "manifest.json").read_text())
    assert manifest["data"]["calibration"]["samples"] == 16 and manifest["data"]["evaluation"]["samples"] == 24
    assert manifest["model"]["kind"] == "hf"
    assert "top1" in next(iter(manifest["targets"].values()))["metrics"]  # labels came from the file, mapped by name
    inputs, outputs = _onnx_io(tmp_path / "q" / "model.onnx")
    assert inputs == [("input_ids", ["batch", "sequence"]), ("token_type_ids", ["batch", "sequence"]), ("attention_mask", ["batch", "sequence"])]
    assert outputs == [("logits", ["batch", 2])]
    assert "config.json" in manifest["inputs"] and "model.safetensors" in manifest["inputs"]


def test_sentence_transformers_folder_exports_pooling_and_normalisation(tmp_path, sentence_folder):
    import onnxruntime as ort
    import torch
    from transformers import AutoTokenizer, BertModel

    import edgesmith

    res = edgesmith.export(str(sentence_folder), out_dir=tmp_path / "st")
    assert res.verdict == "exported"
    sess = ort.InferenceSession(str(tmp_path / "st" / "model.onnx"))
    assert [o.name for o in sess.get_outputs()] == ["sentence_embedding"]
    tok = AutoTokenizer.from_pretrained(str(sentence_folder))
    enc = tok(["the movie is good", "bad"], padding=True, return_tensors="np")
    got = sess.run(None, {i.name: enc[i.name].astype(np.int64) for i in sess.get_inputs()})[0]
    with torch.no_grad():
        hidden = BertModel.from_pretrained(str(sentence_folder)).eval()(**{k: torch.from_numpy(v) for k, v in enc.items()}).last_hidden_state
    mask = torch.from_numpy(enc["attention_mask"]).unsqueeze(-1).float()
    want = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=1).numpy()
    np.testing.assert_allclose(got, want, atol=1e-4)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_folder_refusals(cli, tmp_path, bert_folder):
    """Remote code without the flag, no weights, no tokenizer, weights given as the model: exit 2, one line, a hint."""
    remote = tmp_path / "remote"
    shutil.copytree(bert_folder, remote)
    cfg = json.loads((remote / "config.json").read_text())
    cfg.update(architectures=["MyCustomModel"], auto_map={"AutoModel": "modeling_custom.MyCustomModel"})
    (remote / "config.json").write_text(json.dumps(cfg))
    no_weights = tmp_path / "noweights"
    shutil.copytree(bert_folder, no_weights)
    (no_weights / "model.safetensors").unlink()
    no_tok = tmp_path / "notok"
    no_tok.mkdir()
    for f in ("config.json", "model.safetensors"):
        shutil.copy(bert_folder / f, no_tok / f)
    truncated = tmp_path / "truncated"
    shutil.copytree(bert_folder, truncated)
    (truncated / "model.safetensors").write_bytes((bert_folder / "model.safetensors").read_bytes()[:1000])
    short_bin, object_bin = tmp_path / "shortbin", tmp_path / "objectbin"
    for folder in (short_bin, object_bin):
        shutil.copytree(bert_folder, folder)
        (folder / "model.safetensors").unlink()
    import torch

    torch.save({"w": torch.zeros(3)}, short_bin / "pytorch_model.bin")
    (short_bin / "pytorch_model.bin").write_bytes((short_bin / "pytorch_model.bin").read_bytes()[:300])
    torch.save({"w": torch.zeros(3), "code": Path("x")}, object_bin / "pytorch_model.bin")  # a Python object: never unpickled
    cases = {
        truncated: "cannot load the Transformers folder",
        short_bin: "cannot load the Transformers folder",
        object_bin: "hold Python objects, not only tensors",
        remote: "--trust-remote-code",
        no_weights: "no weights",
        no_tok: "no tokenizer files",
        bert_folder / "model.safetensors": "holds weights, not a model",
        tmp_path / "missing": "model folder not found",
    }
    for model, words in cases.items():
        r = cli("export", model, "-o", tmp_path / "out")
        assert r.code == 2 and len(r.error_lines) == 1 and words in r.error_lines[0] and "hint:" in r.error_lines[0], (model, r.stderr[-800:])
        assert not (tmp_path / "out").exists()


def test_sharded_weights_and_torchscript_and_pt2_names(tmp_path, make_tiny_bert):
    import torch

    import edgesmith

    sharded = make_tiny_bert(tmp_path / "sharded", shard="20KB")
    assert (sharded / "model.safetensors.index.json").is_file()
    res = edgesmith.export(str(sharded), out_dir=tmp_path / "sh")
    assert _onnx_io(tmp_path / "sh" / "model.onnx")[1] == [("logits", ["batch", 2])]

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 4, 3)

        def forward(self, image: torch.Tensor, scale: torch.Tensor) -> dict:
            y = self.conv(image) * scale
            return {"features": y, "score": y.mean((1, 2, 3))}

    net = Net().eval()
    example = (torch.randn(2, 1, 8, 8), torch.ones(2, 1, 1, 1))
    res = edgesmith.export(net, example_inputs=example, out_dir=tmp_path / "mem")  # a tuple: named from forward's signature
    assert res.verdict == "exported"
    assert _onnx_io(tmp_path / "mem" / "model.onnx") == (
        [("image", ["batch", 1, 8, 8]), ("scale", ["batch", 1, 1, 1])],
        [("features", ["batch", 4, 6, 6]), ("score", ["batch"])],
    )
    program = torch.export.export(net, example, dynamic_shapes=({0: torch.export.Dim("b")}, {0: torch.export.Dim("b")}))
    torch.export.save(program, tmp_path / "net.pt2")
    edgesmith.export(str(tmp_path / "net.pt2"), out_dir=tmp_path / "p2")
    assert _onnx_io(tmp_path / "p2" / "model.onnx")[0][0] == ("image", ["batch", 1, 8, 8])  # not the program's own symbol

    class Plain(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.relu(x) * 2

    torch.jit.save(torch.jit.script(Plain()), tmp_path / "plain.ts")
    res = edgesmith.export(str(tmp_path / "plain.ts"), inputs=[{"name": "x", "shape": ["batch", 5]}], out_dir=tmp_path / "ts")
    assert res.manifest["export"]["parity_max_abs"] < 1e-5


def test_transformers_object_and_api_names_stay_functions(tmp_path, bert_folder):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    import edgesmith
    import edgesmith.optimize.preset  # noqa: F401 - importing the subpackage must not replace the function
    import edgesmith.search.pareto  # noqa: F401

    assert callable(edgesmith.optimize) and callable(edgesmith.search) and callable(edgesmith.export)
    model = AutoModelForSequenceClassification.from_pretrained(str(bert_folder))
    enc = AutoTokenizer.from_pretrained(str(bert_folder))(["a good movie", "bad"], padding=True, return_tensors="pt")
    res = edgesmith.export(model, example_inputs=dict(enc), out_dir=tmp_path / "obj")
    inputs, outputs = _onnx_io(tmp_path / "obj" / "model.onnx")
    assert [n for n, _ in inputs] == list(enc.keys()) and inputs[0][1] == ["batch", "sequence"]
    assert outputs == [("logits", ["batch", 2])]
    assert res.manifest["export"]["parity_max_abs"] < 1e-4
    assert torch.is_tensor(enc["input_ids"])


def test_device_bundle_is_a_bounded_sample(tmp_path, digits_images, monkeypatch):
    """A run references its data: the bundle carries a bounded sample, and says how many of how many."""
    import edgesmith
    from edgesmith.data import run_data

    monkeypatch.setattr(run_data, "BUNDLE_MAX_BYTES", 64 * 4 * 40)  # 40 digits of 64 floats: one batch of 32
    res = edgesmith.quantize(
        "edgesmith.zoo:pretrained_digits_cnn", calibration=str(digits_images["flat"]), evaluation=str(digits_images["tree"]), out_dir=tmp_path / "b"
    )
    assert res.manifest["data"]["evaluation"]["bundle_samples"] == 32 and res.manifest["data"]["evaluation"]["samples"] == 200
    with np.load(tmp_path / "b" / "bundle" / "eval_data.npz") as npz:
        assert npz["input:input"].shape[0] == 32 and npz["labels"].shape[0] == 32
    assert res.metrics["top1"] > 90
