"""Real data in, with no glue: image folders, text, JSONL, CSV, parquet and saved datasets folders, read lazily,
checked, split without overlap, with every skipped file counted; hostile files of each class."""

from __future__ import annotations

import numpy as np
import pytest

from edgesmith.data.sources import load_dataset
from edgesmith.errors import ConfigError, InputError
from edgesmith.recipe import DataSource
from edgesmith.schema import InputSpec

DIGIT = [InputSpec(name="input", shape=["batch", 1, 8, 8])]
RGB = [InputSpec(name="pixels", shape=["batch", 3, 16, 16])]
TEXT = [InputSpec(name=n, shape=["batch", "sequence"], dtype="int64") for n in ("input_ids", "token_type_ids", "attention_mask")]


def _load(source, specs=DIGIT, role="evaluation", base=None, **cfg):
    src = DataSource(source=str(source), **cfg)
    return load_dataset(src.source, specs, role=role, samples=src.samples, batch_size=src.batch_size, base_dir=base, cfg=src)


def test_image_folder_labels_from_class_folders_and_pixels_exact(digits_images):
    ds = _load(digits_images["tree"], seed=None)
    assert ds.num_samples == 200 and ds.has_labels and ds.classes == [str(i) for i in range(10)]
    x = np.concatenate([b.inputs["input"] for b in ds.batches])
    order = sorted(range(200), key=lambda i: (str(digits_images["y"][i]), f"{i:04d}"))  # class folder, then file name
    np.testing.assert_allclose(x, digits_images["x"][order], atol=1 / 255)
    np.testing.assert_array_equal(ds.labels(), digits_images["y"][order])


def test_flat_folder_is_unlabelled_and_shuffle_is_seeded(digits_images):
    a, b = _load(digits_images["flat"], samples=50), _load(digits_images["flat"], samples=50)
    assert not a.has_labels and a.num_samples == 50
    np.testing.assert_array_equal(a.first(50)["input"], b.first(50)["input"])
    c = _load(digits_images["flat"], samples=50, seed=1)
    assert not np.array_equal(a.first(50)["input"], c.first(50)["input"])


def test_the_models_own_normalisation_applies_unless_the_data_source_says_otherwise(digits_images):
    """A factory declares how an image becomes its input (EasyOCR's grey lines in [-1, 1]); a data source's
    own block still wins."""
    own = [InputSpec(name="input", shape=["batch", 1, 8, 8], preprocess={"mean": [0.5], "std": [0.5], "color": "L"})]
    plain = _load(digits_images["tree"], seed=None).first(200)["input"]
    model_way = _load(digits_images["tree"], specs=own, seed=None).first(200)["input"]
    np.testing.assert_allclose(model_way, plain * 2 - 1, atol=1e-6)
    source_way = _load(digits_images["tree"], specs=own, seed=None, preprocess="unit").first(200)["input"]
    np.testing.assert_allclose(source_way, plain, atol=1e-6)


def test_one_source_split_into_disjoint_calibration_and_evaluation(digits_images):
    cal = _load(digits_images["flat"], role="calibration", split_at=60)
    ev = _load(digits_images["flat"], role="evaluation", split_at=60)
    assert cal.num_samples == 60 and ev.num_samples == 140
    seen = {x.tobytes() for x in cal.first(60)["input"]}
    assert not any(x.tobytes() in seen for x in ev.first(140)["input"])
    # more than half asked for: calibration takes half, evaluation keeps the rest
    assert _load(digits_images["flat"], role="calibration", split_at=500).num_samples == 100


def test_hostile_image_files_are_counted_skips(tmp_path):
    from PIL import Image

    root = tmp_path / "photos"
    root.mkdir()
    rng = np.random.default_rng(0)
    base = Image.fromarray(rng.integers(0, 255, (20, 24, 3), dtype=np.uint8), "RGB")
    base.save(root / "rgb.jpg")
    base.convert("CMYK").save(root / "cmyk.jpg")
    base.convert("L").save(root / "gray.png")
    base.convert("P").save(root / "palette.png")
    base.convert("RGBA").save(root / "alpha.png")
    Image.fromarray((rng.integers(0, 65535, (20, 24))).astype(np.uint16)).save(root / "deep16.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90 degrees: stored 24 wide, 20 high
    base.save(root / "rotated.jpg", exif=exif)
    (root / "zero.jpg").write_bytes(b"")
    data = (root / "rgb.jpg").read_bytes()
    (root / "truncated.jpg").write_bytes(data[: len(data) // 3])
    (root / "readme.txt").write_text("not an image")
    (root / "fake.png").write_text("not a png either")
    ds = _load(root, RGB)
    assert ds.num_samples == 7, ds.notes
    assert ds.skipped == {"not a readable image": 2, "truncated image": 1, "not an image file (.txt)": 1}, ds.skipped
    x = ds.first(7)["pixels"]
    assert x.shape == (7, 3, 16, 16) and x.dtype == np.float32 and np.isfinite(x).all()
    assert any("skipped 4" in n for n in ds.notes)


def test_exif_orientation_is_applied(tmp_path):
    from PIL import Image

    from edgesmith.data.preprocess import open_image

    img = Image.new("RGB", (40, 20), (255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6
    img.save(tmp_path / "r.jpg", exif=exif)
    assert open_image(tmp_path / "r.jpg").size == (20, 40)


def test_preprocess_presets_and_mismatches():
    from edgesmith.data.preprocess import ImageEncoder, Preprocess

    enc = ImageEncoder(InputSpec(name="x", shape=["batch", 3, 224, 224]), Preprocess.model_validate("imagenet"))
    assert "crop" in enc.describe() and enc.size == (224, 224)
    with pytest.raises(ConfigError, match="takes 224x224"):
        ImageEncoder(InputSpec(name="x", shape=["batch", 3, 224, 224]), Preprocess.model_validate({"preset": "imagenet", "crop": 192}))
    with pytest.raises(ConfigError, match="dynamic height"):
        ImageEncoder(InputSpec(name="x", shape=["batch", 3, "h", "w"]), None)
    nhwc = ImageEncoder(InputSpec(name="x", shape=["batch", 32, 32, 3]), None)
    assert nhwc.layout == "NHWC"
    from edgesmith.recipe import parse_recipe

    with pytest.raises(ConfigError, match="unknown preprocess preset 'imagenette'"):
        parse_recipe({"model": {"source": "m.onnx"}, "data": {"evaluation": {"source": "photos", "preprocess": "imagenette"}}})


def test_image_folder_errors(tmp_path, digits_images):
    one = tmp_path / "one"
    (one / "cats").mkdir(parents=True)
    (one / "cats" / "a.png").write_bytes((digits_images["flat"] / "0000.png").read_bytes())
    with pytest.raises(InputError, match="one class folder"):
        _load(one)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="empty"):
        _load(tmp_path / "empty")
    with pytest.raises(InputError, match="not among the model's classes"):
        load_dataset(str(digits_images["tree"]), DIGIT, role="evaluation", cfg=DataSource(source="x", labels={"0": 0, "1": 1}))
    ds = load_dataset(str(digits_images["tree"]), DIGIT, role="evaluation", cfg=DataSource(source="x", labels={str(i): 9 - i for i in range(10)}, seed=None))
    assert ds.labels()[0] == 9  # class folder "0" mapped to index 9
    with pytest.raises(ConfigError, match="one image input"):
        _load(digits_images["flat"], TEXT)


def test_text_files_with_skips_and_line_numbers(tmp_path, bert_folder):
    txt = tmp_path / "lines.txt"
    txt.write_bytes(b"the movie is good\n\na bad film\n\xff\xfe broken bytes\n" + b"very good " * 100 + b"\n")
    ds = load_dataset(str(txt), TEXT, role="evaluation", cfg=DataSource(source="x", seed=None), tokenizer_dir=bert_folder)
    assert ds.num_samples == 3 and ds.skipped == {"empty line": 1, "not UTF-8": 1}
    feed = ds.first(3)
    assert feed["input_ids"].shape == (3, 64) and feed["input_ids"].dtype == np.int64  # capped at max_position_embeddings
    assert feed["attention_mask"][0].sum() == 6  # [CLS] the movie is good [SEP]
    assert any("truncated" in n for n in ds.notes)

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "good film", "label": "positive"}\nnot json\n\n{"text": "awful", "label": "negative"}\n')
    ds = load_dataset(
        str(bad), TEXT, role="evaluation", cfg=DataSource(source="x", seed=None), tokenizer_dir=bert_folder, model_labels={"negative": 0, "positive": 1}
    )
    assert ds.num_samples == 2 and ds.skipped == {"not JSON": 1, "empty line": 1}
    assert list(ds.labels()) == [1, 0]
    missing = tmp_path / "missing.jsonl"
    missing.write_text('{"text": "good"}\n{"body": "x"}\n')
    with pytest.raises(InputError, match="line 2 has no field 'text'"):
        load_dataset(str(missing), TEXT, role="evaluation", cfg=DataSource(source="x"), tokenizer_dir=bert_folder)
    with pytest.raises(ConfigError, match="tokenizer"):
        load_dataset(str(txt), TEXT, role="evaluation", cfg=DataSource(source="x"))


@pytest.mark.parametrize(
    "lines, message",
    [
        (['{"text": "good", "label": NaN}'], "label nan is not a class index"),
        (['{"text": "good", "label": 1e30}'], "label 1e\\+30 is not a class index"),
        (['{"text": "good", "label": -3}'], "label -3 is not a class index"),
        (['{"text": "good", "label": "99999999999999999999"}'], "is not a class index"),
        (['{"text": 123, "label": 1}'], "text is int, not a string"),
    ],
)
def test_text_labels_and_fields_that_cannot_mean_a_sample_are_named(tmp_path, bert_folder, lines, message):
    """NaN or 1e30 labels were a ValueError/OverflowError (exit 3); a number as the text was counted as empty."""
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines * 4) + "\n")
    with pytest.raises(InputError, match=message):
        load_dataset(str(path), TEXT, role="evaluation", cfg=DataSource(source="x", seed=None), tokenizer_dir=bert_folder).labels()


def test_csv_and_text_files_as_spreadsheets_write_them(tmp_path, bert_folder):
    """A byte-order mark (Excel's "CSV UTF-8") hid the header's first column; a field over 128 KB and an unclosed
    quote were csv.Error (exit 3)."""
    bom = tmp_path / "bom.csv"
    bom.write_bytes("\ufefftext,label\n".encode() + b"good movie,1\nbad plot,0\n")
    ds = load_dataset(str(bom), TEXT, role="evaluation", cfg=DataSource(source="x", seed=None), tokenizer_dir=bert_folder)
    assert ds.num_samples == 2 and list(ds.labels()) == [1, 0]
    txt = tmp_path / "bom.txt"
    txt.write_bytes(b"\xef\xbb\xbfgood\nbad\n")
    plain = tmp_path / "plain.txt"
    plain.write_bytes(b"good\nbad\n")
    first = [load_dataset(str(p), TEXT, role="evaluation", cfg=DataSource(source="x", seed=None), tokenizer_dir=bert_folder).first(2) for p in (txt, plain)]
    assert (first[0]["input_ids"] == first[1]["input_ids"]).all()  # the BOM is not a token
    long = tmp_path / "long.csv"
    long.write_text("text,label\n" + "good " * 60_000 + ",1\nbad,0\n")
    assert load_dataset(str(long), TEXT, role="evaluation", cfg=DataSource(source="x", seed=None), tokenizer_dir=bert_folder).num_samples == 2
    unclosed = tmp_path / "unclosed.csv"
    unclosed.write_text('text,label\ngood,1\n"bad,0\nfine,1\n')
    with pytest.raises(InputError, match="unclosed.csv line 4 has no 'label' value"):
        load_dataset(str(unclosed), TEXT, role="evaluation", cfg=DataSource(source="x", seed=None), tokenizer_dir=bert_folder).labels()


def test_csv_parquet_and_saved_datasets_folder(tmp_path, bert_folder):
    import datasets

    rows = {"sentence": ["a good movie", "bad plot", "great film", "awful"], "label": [1, 0, 1, 0]}
    csv = tmp_path / "reviews.csv"
    csv.write_text("sentence,label\n" + "".join(f'"{s}",{y}\n' for s, y in zip(rows["sentence"], rows["label"])))
    d = datasets.Dataset.from_dict(rows)
    d.to_parquet(str(tmp_path / "reviews.parquet"))
    datasets.DatasetDict({"train": d, "test": d.select([0, 1])}).save_to_disk(str(tmp_path / "saved"))
    for source, n in ((csv, 4), (tmp_path / "reviews.parquet", 4), (tmp_path / "saved", 2)):
        ds = load_dataset(str(source), TEXT, role="evaluation", cfg=DataSource(source="x", seed=None), tokenizer_dir=bert_folder)
        assert ds.num_samples == n and ds.has_labels, source
        assert list(ds.labels()) == rows["label"][:n]
    cal = load_dataset(str(tmp_path / "saved"), TEXT, role="calibration", cfg=DataSource(source="x"), tokenizer_dir=bert_folder)
    assert cal.num_samples == 4  # the calibration role reads the train split
    with pytest.raises(InputError, match="no column 'body'"):
        load_dataset(str(tmp_path / "reviews.parquet"), TEXT, role="evaluation", cfg=DataSource(source="x", field="body"), tokenizer_dir=bert_folder)


def test_numeric_table_columns_feed_inputs_by_name(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    x = np.random.default_rng(0).standard_normal((10, 64)).astype(np.float32)
    pq.write_table(pa.table({"features": list(x), "label": list(range(10))}), tmp_path / "t.parquet")
    spec = [InputSpec(name="input", shape=["batch", 64])]
    ds = load_dataset(str(tmp_path / "t.parquet"), spec, role="evaluation", cfg=DataSource(source="x", seed=None, columns={"input": "features"}))
    np.testing.assert_allclose(ds.first(10)["input"], x)
    assert list(ds.labels()) == list(range(10))


def test_large_folder_streams_in_bounded_memory(tmp_path):
    """A folder far larger than the memory budget is streamed, read again on each pass, under an address-space cap."""
    import subprocess
    import sys

    from PIL import Image

    root = tmp_path / "many"
    root.mkdir()
    tile = Image.fromarray(np.random.default_rng(0).integers(0, 255, (8, 8), dtype=np.uint8), "L")
    for i in range(3000):
        tile.save(root / f"{i:05d}.png")
    # 3000 samples x 3 x 128 x 128 float32 = 590 MB if held; the cap leaves 250 MB over the interpreter's own footprint
    code = f"""
import resource, numpy as np
from edgesmith.data.sources import load_dataset
from edgesmith.recipe import DataSource
from edgesmith.schema import InputSpec
import PIL.Image, PIL.PngImagePlugin
base = int(open('/proc/self/status').read().split('VmSize:')[1].split()[0]) * 1024
resource.setrlimit(resource.RLIMIT_AS, (base + (250 << 20), resource.RLIM_INFINITY))
spec = [InputSpec(name='x', shape=['batch', 3, 128, 128])]
ds = load_dataset({str(root)!r}, spec, role='evaluation', cfg=DataSource(source='x', preprocess='unit'))
assert ds.streamed and ds.num_samples == 3000
n = sum(b.size for b in ds.batches) + sum(b.size for b in ds.batches)
print('ok', n)
"""
    env = {**__import__("os").environ, "EDGESMITH_DATA_MEMORY_MB": "64", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "ok 6000" in proc.stdout
