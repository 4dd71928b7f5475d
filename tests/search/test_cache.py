"""The content-addressed pass cache: hits on equal inputs and configs, misses on any change, and a
cache written by another version (or tampered with) is never trusted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgesmith.cache import STAMP, PassCache, key_of

RECIPE = {
    "model": {"source": "edgesmith.zoo:pretrained_digits_cnn"},
    "inputs": [{"name": "input", "shape": ["batch", 1, 8, 8]}],
    "data": {"calibration": {"source": "digits", "split": "train", "samples": 128}, "evaluation": {"source": "digits", "split": "test"}},
    "targets": ["x86-avx512-vnni-ort"],
}


def _run(tmp: Path, name: str, passes: list, cache: PassCache) -> dict:
    from edgesmith import pipeline
    from edgesmith.recipe import parse_recipe

    res = pipeline.run(parse_recipe({**RECIPE, "passes": passes}), tmp, out_dir=tmp / name, cache=cache, measure_latency=False)
    return res.manifest


@pytest.mark.slow
def test_a_second_run_takes_every_step_from_the_cache_and_a_changed_config_misses(tmp_path):
    passes = [{"type": "prune_channels", "ratio": 0.25}, {"type": "ptq_int8", "calibration": "minmax"}]
    first = _run(tmp_path, "a", passes, PassCache(tmp_path / "cache"))
    assert [e["result"] for e in first["cache"]["events"]] == ["miss", "miss", "miss"]
    again = _run(tmp_path, "b", passes, PassCache(tmp_path / "cache"))
    assert [e["result"] for e in again["cache"]["events"]] == ["hit", "hit", "hit"]
    t1, t2 = first["targets"]["x86-avx512-vnni-ort"], again["targets"]["x86-avx512-vnni-ort"]
    assert t1["metrics"] == t2["metrics"] and t1["notes"] == t2["notes"]
    changed = _run(tmp_path, "c", [{"type": "prune_channels", "ratio": 0.25}, {"type": "ptq_int8", "calibration": "entropy"}], PassCache(tmp_path / "cache"))
    assert [(e["what"], e["result"]) for e in changed["cache"]["events"]] == [("float export", "hit"), ("torch passes", "hit"), ("ptq_int8", "miss")]


def test_a_cache_written_by_another_version_is_ignored_with_a_note(tmp_path):
    c = PassCache(tmp_path / "cache")
    f = tmp_path / "x.bin"
    f.write_bytes(b"data")
    key = key_of({"k": 1})
    c.put(key, [f], {"output": "x.bin"})
    assert PassCache(tmp_path / "cache").get(key) is not None
    stamp = json.loads((tmp_path / "cache" / STAMP).read_text())
    (tmp_path / "cache" / STAMP).write_text(json.dumps({**stamp, "edgesmith": "0.0.1", "code": "older"}))
    old = PassCache(tmp_path / "cache")
    assert not old.usable and "another edgesmith (0.0.1" in old.notes[0]
    assert old.get(key) is None
    old.put(key_of({"k": 2}), [f], {"output": "x.bin"})
    assert not any((tmp_path / "cache").glob(f"{key_of({'k': 2})[:2]}/*")), "nothing is written into a foreign cache"


def test_a_changed_entry_fails_its_checksum_and_is_not_used(tmp_path):
    c = PassCache(tmp_path / "cache")
    f = tmp_path / "x.bin"
    f.write_bytes(b"good")
    key = key_of({"k": 1})
    c.put(key, [f], {"output": "x.bin"})
    (tmp_path / "cache" / key[:2] / key / "x.bin").write_bytes(b"evil")
    fresh = PassCache(tmp_path / "cache")
    assert fresh.get(key) is None and "failed its checksum" in fresh.notes[0] and "discarded" in fresh.notes[0]


@pytest.mark.parametrize("attack", ["recomputed checksum", "output outside the cache", "entry moved to another key"])
def test_a_rewritten_entry_is_discarded_and_recomputed(tmp_path, attack):
    import hashlib

    c = PassCache(tmp_path / "cache")
    f = tmp_path / "x.bin"
    f.write_bytes(b"good")
    key, other = key_of({"k": 1}), key_of({"k": 2})
    c.put(key, [f], {"output": "x.bin"})
    folder = tmp_path / "cache" / key[:2] / key
    entry = json.loads((folder / "entry.json").read_text())
    if attack == "recomputed checksum":
        (folder / "x.bin").write_bytes(b"evil")
        entry["files"]["x.bin"] = hashlib.sha256(b"evil").hexdigest()
    elif attack == "output outside the cache":
        entry["meta"]["output"] = "../../../../etc/passwd"
    (folder / "entry.json").write_text(json.dumps(entry))
    probe = key
    if attack == "entry moved to another key":
        (tmp_path / "cache" / other[:2]).mkdir(exist_ok=True)
        folder.rename(tmp_path / "cache" / other[:2] / other)
        probe = other
    fresh = PassCache(tmp_path / "cache")
    assert fresh.get(probe) is None and "discarded" in fresh.notes[0]
    assert not (tmp_path / "cache" / probe[:2] / probe).exists()  # gone: the next run recomputes and stores it anew


@pytest.mark.slow
def test_changed_data_content_misses_whatever_its_source(tmp_path):
    import numpy as np

    from edgesmith.data.digits import load_digits_split

    x, y = load_digits_split("train")
    path = str(tmp_path / "calib.npy")
    (tmp_path / "mydata.py").write_text(f"import numpy as np\ndef load():\n    return [np.load({path!r})]\n")
    np.save(tmp_path / "calib.npy", x[:64].reshape(-1, 1, 8, 8))
    recipe = {**RECIPE, "data": {"calibration": {"source": "mydata:load"}, "evaluation": {"source": "digits", "split": "test", "samples": 64}}}
    import sys

    sys.path.insert(0, str(tmp_path))
    try:
        from edgesmith import pipeline
        from edgesmith.recipe import parse_recipe

        def run(name: str) -> list:
            res = pipeline.run(
                parse_recipe({**recipe, "passes": [{"type": "ptq_int8"}]}),
                tmp_path,
                out_dir=tmp_path / name,
                cache=PassCache(tmp_path / "cache"),
                measure_latency=False,
            )
            return [e["result"] for e in res.manifest["cache"]["events"]]

        assert run("a")[-1] == "miss" and run("b")[-1] == "hit"
        np.save(tmp_path / "calib.npy", x[64:128].reshape(-1, 1, 8, 8))  # same function, same file name, other samples
        assert run("c")[-1] == "miss"
    finally:
        sys.path.remove(str(tmp_path))


def test_a_folder_that_is_not_a_cache_is_left_alone(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    c = PassCache(tmp_path / "mine")
    assert not c.usable and "not an edgesmith cache" in c.notes[0]
    assert sorted(p.name for p in (tmp_path / "mine").iterdir()) == ["notes.txt"]


@pytest.mark.slow
def test_typed_records_travel_with_the_entry(tmp_path):
    """fold_bn hands BatchNormFolded on and weight quantizers hand FloatWeights/WeightGrids to ptq_int8: a
    cached step restores the records it produced, and the records a step receives are part of its key."""
    passes = [{"type": "rtn", "bits": 4}, {"type": "ptq_int8"}]
    first = _run(tmp_path, "a", passes, PassCache(tmp_path / "cache"))
    again = _run(tmp_path, "b", passes, PassCache(tmp_path / "cache"))
    assert [e["result"] for e in again["cache"]["events"]] == ["hit", "hit", "hit"]
    t1, t2 = first["targets"]["x86-avx512-vnni-ort"], again["targets"]["x86-avx512-vnni-ort"]
    assert t1["metrics"] == t2["metrics"] and t1["size"] == t2["size"]
    other = _run(tmp_path, "c", [{"type": "rtn", "bits": 3}, {"type": "ptq_int8"}], PassCache(tmp_path / "cache"))
    # other grids in: the torch stage and the INT8 pass that reads its WeightGrids both miss
    assert [(e["what"], e["result"]) for e in other["cache"]["events"]] == [("float export", "hit"), ("torch passes", "miss"), ("ptq_int8", "miss")]


def test_optimize_and_tune_export_through_the_same_cache(tmp_path):
    """One cache for every preset: the export optimize and tune start from (and their torch passes) comes
    from the pass cache a search (or an earlier optimize/tune) filled."""
    from edgesmith import pipeline
    from edgesmith.recipe import parse_recipe

    recipe = parse_recipe({**RECIPE, "passes": [{"type": "prune_channels", "ratio": 0.25}]})
    first = PassCache(tmp_path / "cache")
    pipeline.export_once(recipe, tmp_path, tmp_path / "w1", cache=first)
    assert [r for _, r in first.events] == ["miss", "miss"]
    again = PassCache(tmp_path / "cache")
    f2, s2 = pipeline.export_once(recipe, tmp_path, tmp_path / "w2", cache=again)
    assert [r for _, r in again.events] == ["hit", "hit"] and f2.is_file() and s2.is_file()
    assert (tmp_path / "w1" / "export" / "model.torch_passes.onnx").read_bytes() == s2.read_bytes()
