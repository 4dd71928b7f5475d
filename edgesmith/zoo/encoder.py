"""A BERT-style encoder over the digits read as a token sequence: int64 token ids and an attention mask.

Each 8x8 digit becomes a sentence: ``[CLS]`` then one token per inked pixel in raster order (the token
is the pixel's ink level, 1..16; its ``position_ids`` entry is the pixel's index, as BERT's optional
position input), padded with ``[PAD]`` to 65 tokens; the attention mask marks the real tokens (a digit
inks 20-50 of its 64 pixels, so every batch carries real padding).
The model is a post-norm BERT encoder (token + position embeddings, LayerNorm, multi-head softmax
attention with the additive mask, GELU feed-forward) with a tanh pooler and a classifier on ``[CLS]``:
the structure of a sentence encoder (int64 inputs, LayerNorm, GELU, softmax attention) trained on real
data, small enough to train in a minute on 2 cores.

    edgesmith.zoo:trained_digits_encoder          # trained on the digits (cached, like the other zoo models)
    edgesmith.zoo:bert_mini                       # the same code at BERT-mini scale (4x256, 128 tokens), random weights, for speed
    edgesmith.zoo.encoder:tokens_train / tokens_test   # the data, as (inputs, labels) batches
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from edgesmith.data.digits import load_digits_split

PAD, CLS = 0, 1
LEVELS = 16
VOCAB = 2 + LEVELS
SEQ = 65


def tokenize(images: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Digits [N, 1, 8, 8] in [0, 1] -> (input_ids, attention_mask, position_ids), each int64 [N, 65]."""
    ink = np.rint(images.reshape(len(images), 64) * LEVELS).astype(np.int64)
    ids = np.full((len(images), SEQ), PAD, np.int64)
    mask = np.zeros((len(images), SEQ), np.int64)
    positions = np.zeros((len(images), SEQ), np.int64)
    ids[:, 0], mask[:, 0] = CLS, 1
    for i, row in enumerate(ink):
        pix = np.flatnonzero(row)
        ids[i, 1 : 1 + len(pix)] = 1 + row[pix]
        mask[i, : 1 + len(pix)] = 1
        positions[i, 1 : 1 + len(pix)] = 1 + pix
    return ids, mask, positions


def _batches(split: str, batch: int = 32) -> Iterator[tuple[dict[str, np.ndarray], np.ndarray]]:

    x, y = load_digits_split(split)
    ids, mask, positions = tokenize(x)
    for i in range(0, len(y), batch):
        yield {"input_ids": ids[i : i + batch], "attention_mask": mask[i : i + batch], "position_ids": positions[i : i + batch]}, y[i : i + batch]


def tokens_train():
    """The digits' train split as token batches (calibration data)."""
    return _batches("train")


def tokens_test():
    """The held-out split as token batches (evaluation data)."""
    return _batches("test")


def random_tokens(seq: int = 128, vocab: int = 30522, n: int = 256, batch: int = 16, seed: int = 0):
    """Random sentences for the random-weight ``bert_mini``: ids in the vocabulary, a [CLS] first,
    lengths between a quarter and all of ``seq`` (padding masked), positions 0..len-1. No labels."""
    rng = np.random.default_rng(seed)
    for start in range(0, n, batch):
        b = min(batch, n - start)
        lengths = rng.integers(seq // 4, seq + 1, b)
        ids = rng.integers(2, vocab, (b, seq)).astype(np.int64)
        mask = (np.arange(seq)[None, :] < lengths[:, None]).astype(np.int64)
        ids[:, 0] = CLS
        ids[mask == 0] = PAD
        positions = np.where(mask == 1, np.arange(seq)[None, :], 0).astype(np.int64)
        yield {"input_ids": ids, "attention_mask": mask, "position_ids": positions}


def _block(nn: Any, torch: Any, hidden: int, heads: int, ffn: int):
    class EncoderLayer(nn.Module):
        def __init__(self):
            super().__init__()
            self.heads, self.dim = heads, hidden // heads
            self.query, self.key, self.value = nn.Linear(hidden, hidden), nn.Linear(hidden, hidden), nn.Linear(hidden, hidden)
            self.attn_out, self.attn_norm = nn.Linear(hidden, hidden), nn.LayerNorm(hidden)
            self.ffn_in, self.ffn_out, self.ffn_norm = nn.Linear(hidden, ffn), nn.Linear(ffn, hidden), nn.LayerNorm(hidden)

        def split(self, t):
            return t.reshape(t.shape[0], t.shape[1], self.heads, self.dim).transpose(1, 2)

        def forward(self, h, bias):
            q, k, v = self.split(self.query(h)), self.split(self.key(h)), self.split(self.value(h))
            scores = torch.matmul(q, k.transpose(-1, -2)) * (self.dim**-0.5) + bias
            ctx = torch.matmul(torch.softmax(scores, dim=-1), v).transpose(1, 2).reshape(h.shape)
            h = self.attn_norm(h + self.attn_out(ctx))
            return self.ffn_norm(h + self.ffn_out(torch.nn.functional.gelu(self.ffn_in(h))))

    return EncoderLayer()


def digits_encoder(hidden: int = 128, layers: int = 2, heads: int = 4, seq: int = SEQ, vocab: int = VOCAB, num_classes: int = 10):
    """The BERT-style encoder: (input_ids, attention_mask, position_ids) int64 [batch, seq] -> class logits."""
    import torch
    import torch.nn as nn

    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.tokens, self.positions = nn.Embedding(vocab, hidden), nn.Embedding(seq, hidden)
            self.norm = nn.LayerNorm(hidden)
            self.layers = nn.ModuleList(_block(nn, torch, hidden, heads, 4 * hidden) for _ in range(layers))
            self.pooler, self.classifier = nn.Linear(hidden, hidden), nn.Linear(hidden, num_classes)

        def forward(self, input_ids, attention_mask, position_ids):
            h = self.norm(self.tokens(input_ids) + self.positions(position_ids))
            bias = (1.0 - attention_mask[:, None, None, :].to(h.dtype)) * -10000.0
            for layer in self.layers:
                h = layer(h, bias)
            return self.classifier(torch.tanh(self.pooler(h[:, 0])))

    return Encoder()


def bert_mini():
    """BERT-mini scale (4 layers x 256 hidden, 4 heads, 128 tokens, BERT's 30,522-token vocabulary), random weights: a speed model."""
    return digits_encoder(hidden=256, layers=4, heads=4, seq=128, vocab=30522)


def _spec(seq: int) -> list[dict]:
    return [{"name": n, "shape": ["batch", seq], "dtype": "int64"} for n in ("input_ids", "attention_mask", "position_ids")]


INPUT_SPEC = _spec(SEQ)
digits_encoder.input_spec = INPUT_SPEC
# the digits as token sentences (labelled): what quantize/optimize use when no --data is given
digits_encoder.defaults = {
    "data": {"calibration": {"source": "edgesmith.zoo.encoder:tokens_train", "samples": 256}, "evaluation": {"source": "edgesmith.zoo.encoder:tokens_test"}}
}
bert_mini.input_spec = _spec(128)
bert_mini.defaults = {
    "metric": "fidelity",
    "data": {"calibration": {"source": "edgesmith.zoo.encoder:random_tokens"}, "evaluation": {"source": "edgesmith.zoo.encoder:random_tokens"}},
}
