"""Real text rendered as images, so an OCR model has real inputs and free ground truth — no download.

The text is real English prose that ships inside installed packages (scikit-learn's dataset descriptions,
Python's own module documentation as a fallback); the fonts are the DejaVu faces matplotlib ships (sans,
serif, mono, bold and oblique). Each line is drawn in black on a light background with a random font,
size, offset, contrast and a little blur and noise, then fed as EasyOCR feeds its recognizer: grey,
64 pixels high, (pixel/255 - 0.5)/0.5. Pages for the detector: several lines at random places on an RGB
page, normalised with ImageNet's mean and std, with each word's box as ground truth.

Data sources for a recipe (``data: {calibration: {source: "edgesmith.data.text_render:text_lines"}}``):
``text_lines`` (labels: the line's characters as class indices + 1, 0-padded: CTC's convention),
``unlabelled_text_lines`` (the same lines, no labels: what a user with only images has) and ``text_pages``.
"""

from __future__ import annotations

import json
import pydoc
import re
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from edgesmith.errors import ConfigError

# EasyOCR english_g2's character list (its config.py): class i + 1 is CHARACTERS[i]; class 0 is the CTC blank
CHARACTERS = "0123456789!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~ €ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
MAX_LABEL = 48  # characters kept per line label (a 256-pixel line holds ~35 at the sizes drawn)
_FACES = ("DejaVuSans.ttf", "DejaVuSerif.ttf", "DejaVuSansMono.ttf", "DejaVuSans-Bold.ttf", "DejaVuSerif-Italic.ttf", "DejaVuSans-Oblique.ttf")


@lru_cache(maxsize=1)
def corpus() -> tuple[str, ...]:
    """Words of real prose from the installed packages, in reading order."""
    texts: list[str] = []
    try:
        import sklearn

        texts += [p.read_text(encoding="utf-8") for p in sorted((Path(sklearn.__file__).parent / "datasets" / "descr").glob("*.rst"))]
    except ImportError:
        pass
    if not texts:
        texts = [pydoc.getdoc(m) for m in (json, re, pydoc)]
    words = [w for t in texts for w in re.sub(r"[`*|=~^_\\]+", " ", t).split() if len(w) < 20]
    return tuple(w for w in words if all(c in _charset() for c in w))


def _charset() -> str:
    return CHARACTERS


@lru_cache(maxsize=1)
def fonts() -> tuple[str, ...]:
    try:
        import matplotlib
    except ImportError:
        raise ConfigError("rendering text needs the DejaVu fonts that ship with matplotlib", hint="pip install 'edgesmith[ocr]'") from None
    folder = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    found = tuple(str(folder / f) for f in _FACES if (folder / f).is_file())
    if not found:
        raise ConfigError(f"no DejaVu font under {folder}", hint="reinstall matplotlib")
    return found


def encode(text: str) -> np.ndarray:
    """A line's characters as class indices + 1 (0 is CTC's blank and the padding), MAX_LABEL long."""
    chars = _charset()
    ids = [chars.index(c) + 1 for c in text[:MAX_LABEL]]
    return np.array(ids + [0] * (MAX_LABEL - len(ids)), dtype=np.int64)


def decode_labels(label: np.ndarray) -> str:
    chars = _charset()
    return "".join(chars[i - 1] for i in label if i > 0)


def _sample_line(rng: np.random.Generator, words: tuple[str, ...], font: Any, width: int) -> str:
    """Consecutive words of the corpus from a random place, as many as fit ``width`` pixels."""
    start = int(rng.integers(0, max(1, len(words) - 40)))
    text = ""
    for w in words[start : start + 40]:
        trial = (text + " " + w).strip()
        if font.getlength(trial) > width:
            break
        text = trial
    return text or words[start][: max(1, width // 12)]


def render_line(rng: np.random.Generator, height: int = 64, width: int = 256) -> tuple[np.ndarray, str]:
    """One text line: a [height, width] uint8 grey image and its text."""
    from PIL import Image, ImageDraw, ImageFilter, ImageFont

    font = ImageFont.truetype(fonts()[int(rng.integers(len(fonts())))], int(rng.integers(20, 33)))
    margin = int(rng.integers(2, 10))
    text = _sample_line(rng, corpus(), font, width - 2 * margin)
    bg, fg = int(rng.integers(170, 256)), int(rng.integers(0, 90))
    img = Image.new("L", (width, height), bg)
    top = (height - (font.getbbox("Ag")[3] - font.getbbox("Ag")[1])) // 2 + int(rng.integers(-6, 7))
    ImageDraw.Draw(img).text((margin, top - font.getbbox("Ag")[1]), text, fill=fg, font=font)
    if rng.random() < 0.5:
        img = img.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.2, 1.0))))
    arr = np.asarray(img, dtype=np.float32) + rng.normal(0, rng.uniform(0, 8), (height, width))
    return np.clip(arr, 0, 255).astype(np.uint8), text


def _lines(n: int, seed: int, batch: int, labelled: bool) -> Iterator[Any]:
    if n < 1 or batch < 1:
        raise ConfigError(f"text lines: n and batch must be >= 1, got n={n}, batch={batch}", hint="e.g. n: 512, batch: 32")
    rng = np.random.default_rng(seed)
    for i in range(0, n, batch):
        rows = [render_line(rng) for _ in range(min(batch, n - i))]
        x = (np.stack([r[0] for r in rows])[:, None].astype(np.float32) / 255.0 - 0.5) / 0.5
        yield (x, np.stack([encode(r[1]) for r in rows])) if labelled else x


def text_lines(n: int = 512, seed: int = 0, batch: int = 32) -> list[Any]:
    """``n`` rendered lines as (inputs [B, 1, 64, 256], labels [B, 48]) batches: the recognizer's evaluation data."""
    return list(_lines(n, seed, batch, True))


def unlabelled_text_lines(n: int = 512, seed: int = 1, batch: int = 32) -> list[Any]:
    """The same kind of lines without their text: training data a user without labels has (another seed by default)."""
    return list(_lines(n, seed, batch, False))


MEAN, STD = np.array([0.485, 0.456, 0.406], np.float32), np.array([0.229, 0.224, 0.225], np.float32)


def render_page(rng: np.random.Generator, size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """One page: a [size, size, 3] uint8 RGB image and its word boxes [K, 4] (x0, y0, x1, y1) in pixels."""
    from PIL import Image, ImageDraw, ImageFont

    bg = tuple(int(v) for v in rng.integers(180, 256, 3))
    img = Image.new("RGB", (size, size), bg)
    draw = ImageDraw.Draw(img)
    boxes: list[list[float]] = []
    y = int(rng.integers(4, 20))
    words = corpus()
    while y < size - 24:
        font = ImageFont.truetype(fonts()[int(rng.integers(len(fonts())))], int(rng.integers(14, 28)))
        x = int(rng.integers(4, 40))
        fg = tuple(int(v) for v in rng.integers(0, 90, 3))
        start = int(rng.integers(0, max(1, len(words) - 20)))
        for w in words[start : start + 20]:
            x0, y0, x1, y1 = draw.textbbox((x, y), w, font=font)
            if x1 > size - 4:
                break
            draw.text((x, y), w, fill=fg, font=font)
            boxes.append([x0, y0, x1, y1])
            x = int(x1 + font.getlength(" "))
        y = y + int(font.size * rng.uniform(1.4, 2.6))
    return np.asarray(img), np.array(boxes, np.float32).reshape(-1, 4)


def text_pages(n: int = 64, seed: int = 0, batch: int = 8, size: int = 256) -> list[Any]:
    """``n`` rendered pages as [B, 3, size, size] inputs (ImageNet-normalised, as CRAFT takes them)."""
    if n < 1 or batch < 1 or size < 64:
        raise ConfigError(f"text pages: n, batch >= 1 and size >= 64, got n={n}, batch={batch}, size={size}", hint="e.g. n: 64, size: 256")
    rng = np.random.default_rng(seed)
    out = []
    for i in range(0, n, batch):
        pages = [render_page(rng, size)[0] for _ in range(min(batch, n - i))]
        out.append(((np.stack(pages).astype(np.float32) / 255.0 - MEAN) / STD).transpose(0, 3, 1, 2).copy())
    return out


def page_boxes(n: int = 64, seed: int = 0, size: int = 256) -> list[np.ndarray]:
    """The word boxes of ``text_pages(n, seed, size=size)``'s pages, in order (the same random draws)."""
    rng = np.random.default_rng(seed)
    return [render_page(rng, size)[1] for _ in range(n)]
