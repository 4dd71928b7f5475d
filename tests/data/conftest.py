"""Real models and real files, built offline: a tiny Transformers classifier saved with save_pretrained (with
its tokenizer), a sentence-transformers folder around it, and image folders written from the digits."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

WORDS = ["the", "a", "is", "good", "bad", "movie", "film", "great", "awful", "plot", "##s", "##ing", "not", "very"]


def _tiny_bert(folder: Path, *, head: bool = True, shard: str | None = None) -> Path:
    import warnings

    from transformers import BertConfig, BertForSequenceClassification, BertModel, BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    vocab = folder / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *list("abcdefghijklmnopqrstuvwxyz"), *WORDS]) + "\n")
    tok = BertTokenizerFast(vocab_file=str(vocab))
    cfg = BertConfig(
        vocab_size=5 + 26 + len(WORDS),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        num_labels=2,
        id2label={0: "negative", 1: "positive"},
        label2id={"negative": 0, "positive": 1},
    )
    import torch

    torch.manual_seed(0)
    model = (BertForSequenceClassification if head else BertModel)(cfg).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.save_pretrained(str(folder), **({"max_shard_size": shard} if shard else {}))
        tok.save_pretrained(str(folder))
    vocab.unlink(missing_ok=True) if (folder / "tokenizer.json").is_file() else None
    return folder


@pytest.fixture(scope="session")
def make_tiny_bert():
    """Write a tiny BERT folder: make_tiny_bert(folder, head=True, shard=None)."""
    return _tiny_bert


@pytest.fixture(scope="session")
def bert_folder(tmp_path_factory) -> Path:
    """A tiny BERT sentiment classifier (labels negative/positive) with its tokenizer, as save_pretrained writes it."""
    return _tiny_bert(tmp_path_factory.mktemp("hf") / "tiny-bert")


@pytest.fixture(scope="session")
def sentence_folder(tmp_path_factory) -> Path:
    """A sentence-transformers folder: the encoder at the root, mean pooling, normalisation."""
    root = _tiny_bert(tmp_path_factory.mktemp("st") / "tiny-st", head=False)
    (root / "1_Pooling").mkdir()
    (root / "1_Pooling" / "config.json").write_text(
        json.dumps({"word_embedding_dimension": 32, "pooling_mode_cls_token": False, "pooling_mode_mean_tokens": True, "pooling_mode_max_tokens": False})
    )
    (root / "modules.json").write_text(
        json.dumps(
            [
                {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
                {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
                {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
            ]
        )
    )
    return root


SENTENCES = [
    "the movie is good",
    "a bad film",
    "very good plot",
    "awful movie not good",
    "the film is great",
    "bad plot",
    "a great movie",
    "the plot is awful",
    "good good film",
    "not a bad movie",
]


@pytest.fixture(scope="session")
def reviews_jsonl(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("text") / "reviews.jsonl"
    lines = [json.dumps({"text": s, "label": "positive" if ("good" in s or "great" in s) else "negative"}) for s in SENTENCES * 4]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="session")
def digits_images(tmp_path_factory) -> dict[str, Path]:
    """The digits' test split as PNG files: an ImageFolder tree (one folder per class) and a flat folder."""
    from PIL import Image

    from edgesmith.data.digits import load_digits_split

    x, y = load_digits_split("test")
    root = tmp_path_factory.mktemp("images")
    tree, flat = root / "tree", root / "flat"
    for i, (img, label) in enumerate(zip(x[:200], y[:200])):
        pil = Image.fromarray(np.rint(img[0] * 255).astype(np.uint8), "L")
        (tree / str(label)).mkdir(parents=True, exist_ok=True)
        pil.save(tree / str(label) / f"{i:04d}.png")
        flat.mkdir(exist_ok=True)
        pil.save(flat / f"{i:04d}.png")
    return {"tree": tree, "flat": flat, "x": x[:200], "y": y[:200]}
