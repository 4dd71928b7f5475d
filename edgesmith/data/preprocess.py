"""Image preprocessing with Pillow and numpy (torchvision is not used): decode, orient, convert, resize,
crop, scale, normalise and lay out one image the way a model's input expects.

A ``preprocess:`` block in a data source, or a preset name::

    preprocess: imagenet                   # resize 256 (shorter side), centre crop 224, ImageNet mean/std, RGB, NCHW
    preprocess: {preset: imagenet, crop: 192, resize: 220}
    preprocess: {resize: [32, 32], mean: [0.5], std: [0.5], color: L}

Every image is turned upright from its EXIF orientation; CMYK, palette, alpha, 16-bit and grayscale
images are converted to the colour the input wants (a 16-bit image is scaled, not clipped).
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from pydantic import Field, ValidationError, model_validator

from edgesmith.errors import ConfigError
from edgesmith.schema import Strict, format_validation_error

# NOTE: Pillow warns on open past MAX_IMAGE_PIXELS; open_image refuses such images itself (no global filter per call: decoding is threaded)
warnings.filterwarnings("ignore", message="Image size .* exceeds limit", category=Warning)

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm"})

PRESETS: dict[str, dict[str, Any]] = {
    # torchvision's ImageNet evaluation transform (Resize(256) + CenterCrop(224) + Normalize)
    "imagenet": {"resize": 256, "crop": 224, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "color": "RGB"},
    # Inception/ViT-style: [-1, 1]
    "inception": {"resize": 342, "crop": 299, "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "color": "RGB"},
    # OpenAI CLIP
    "clip": {"resize": 224, "crop": 224, "mean": [0.48145466, 0.4578275, 0.40821073], "std": [0.26862954, 0.26130258, 0.27577711], "color": "RGB"},
    # Caffe-style BGR, 0..255 minus the mean
    "caffe": {"resize": 256, "crop": 224, "scale": 1.0, "mean": [103.939, 116.779, 123.68], "std": [1.0, 1.0, 1.0], "color": "BGR"},
    # plain [0, 1] pixels, resized to the input's size
    "unit": {"mean": [0.0], "std": [1.0]},
}


class Preprocess(Strict):
    """How an image becomes a model input. Sizes left out are taken from the input spec."""

    preset: str | None = None
    resize: int | list[int] | None = Field(default=None, description="shorter side (int) or [height, width]")
    crop: int | list[int] | None = Field(default=None, description="centre crop [height, width] after the resize")
    random_crop: bool = False
    mean: list[float] = [0.0]
    std: list[float] = [1.0]
    scale: float = Field(default=1 / 255, gt=0, description="pixel values are multiplied by this before mean/std")
    color: Literal["RGB", "BGR", "L"] | None = None
    layout: Literal["NCHW", "NHWC"] | None = None
    dtype: Literal["float32", "float16", "uint8"] = "float32"

    @model_validator(mode="before")
    @classmethod
    def _preset(cls, data: Any) -> Any:
        if isinstance(data, str):
            data = {"preset": data}
        if isinstance(data, dict) and data.get("preset") is not None:
            name = data["preset"]
            if name not in PRESETS:
                raise ValueError(f"unknown preprocess preset {name!r} (presets: {', '.join(PRESETS)})")
            data = {**PRESETS[name], **data}
        return data

    @model_validator(mode="after")
    def _sizes(self) -> Preprocess:
        for what, v in (("resize", self.resize), ("crop", self.crop)):
            vals = [v] if isinstance(v, int) else (v or [])
            if isinstance(v, list) and len(v) != 2:
                raise ValueError(f"preprocess {what} is one side or [height, width], got {v}")
            if any(x < 1 or x > 16384 for x in vals):
                raise ValueError(f"preprocess {what} sizes must be 1..16384, got {v}")
        if any(s == 0 for s in self.std):
            raise ValueError("preprocess std must not contain 0")
        if len(self.mean) != len(self.std) and 1 not in (len(self.mean), len(self.std)):
            raise ValueError(f"preprocess mean {self.mean} and std {self.std} have different lengths")
        return self


def _pair(v: int | list[int]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


class ImageEncoder:
    """One image file (a path or bytes) -> one array of the input's layout; ``describe`` says what it does."""

    def __init__(self, spec: Any, pre: Preprocess | None):
        shape = list(spec.shape)
        if len(shape) != 4:
            raise ConfigError(f"images feed 4-D inputs; input {spec.name!r} is {shape}", hint="give an .npz or a data function for this input")
        self.name = spec.name
        given = pre is not None
        pre = pre or Preprocess()
        layout = pre.layout or (
            "NHWC" if isinstance(shape[3], int) and shape[3] in (1, 3, 4) and not (isinstance(shape[1], int) and shape[1] in (1, 3)) else "NCHW"
        )
        c, h, w = (shape[1], shape[2], shape[3]) if layout == "NCHW" else (shape[3], shape[1], shape[2])
        if not isinstance(c, int):
            c = 1 if pre.color == "L" else 3
        if c not in (1, 3):
            raise ConfigError(
                f"input {spec.name!r} has {c} channels; images give 1 (L) or 3 (RGB/BGR)", hint="set `preprocess: {layout: NHWC}` if the channels come last"
            )
        fixed = pre.crop if pre.crop is not None else (pre.resize if isinstance(pre.resize, list) else None)
        out_h, out_w = _pair(fixed) if fixed is not None else (h, w)
        if not (isinstance(out_h, int) and isinstance(out_w, int)):
            raise ConfigError(
                f"input {spec.name!r} has dynamic height/width {shape}: the image size must be given",
                hint="add `preprocess: {resize: 256, crop: 224}` (or a preset such as imagenet) to the data source",
            )
        if isinstance(h, int) and isinstance(w, int) and (out_h, out_w) != (h, w):
            raise ConfigError(
                f"preprocess gives {out_h}x{out_w} images, input {spec.name!r} takes {h}x{w}",
                hint="set preprocess crop/resize to the input's size, or leave them out to use it",
            )
        if not given and c == 3:  # NOTE: a colour model with no block: ImageNet conventions at the input's own size
            pre = Preprocess.model_validate({"preset": "imagenet", "resize": int(round(min(out_h, out_w) / 0.875)), "crop": [out_h, out_w]})
            self.defaulted = True
        else:
            self.defaulted = False
        self.pre, self.layout, self.channels, self.size = pre, layout, c, (out_h, out_w)
        self.color = pre.color or ("L" if c == 1 else "RGB")
        if (self.color == "L") != (c == 1):
            raise ConfigError(
                f"preprocess color {self.color} gives {1 if self.color == 'L' else 3} channel(s), input {spec.name!r} takes {c}",
                hint="use color L for one channel, RGB or BGR for three",
            )
        n = len(pre.mean)
        self.mean = np.asarray(pre.mean if n == c else pre.mean * c, np.float32)[:c]
        self.std = np.asarray(pre.std if len(pre.std) == c else pre.std * c, np.float32)[:c]
        self.dtype = np.dtype(pre.dtype if pre.dtype != "float32" or spec.dtype not in ("float16", "uint8") else spec.dtype)

    def describe(self) -> str:
        p = self.pre
        steps = [f"resize {p.resize}" if p.resize else f"resize to {self.size[0]}x{self.size[1]}"]
        if p.crop:
            steps.append(f"{'random' if p.random_crop else 'centre'} crop {self.size[0]}x{self.size[1]}")
        steps.append(
            f"{self.color}, x{p.scale:g}, mean {[round(float(m), 4) for m in self.mean]}, std {[round(float(s), 4) for s in self.std]}, {self.layout} {self.dtype}"
        )
        return ("ImageNet convention (default for a 3-channel input; set `preprocess:` to change it): " if self.defaulted else "") + ", ".join(steps)

    def __call__(self, source: Any, rng: np.random.Generator | None = None) -> np.ndarray:
        img = open_image(source)
        img = self._resize(to_color(img, self.color), rng)
        arr = np.asarray(img, dtype=np.float32)
        if arr.ndim == 2:
            arr = arr[:, :, None]
        if self.color == "BGR":
            arr = arr[:, :, ::-1]
        if self.dtype != np.uint8:
            arr = (arr * self.pre.scale - self.mean) / self.std
        else:
            arr = np.clip(np.rint(arr), 0, 255)
        if self.layout == "NCHW":
            arr = arr.transpose(2, 0, 1)
        return np.ascontiguousarray(arr, dtype=self.dtype)

    def _resize(self, img: Any, rng: np.random.Generator | None = None) -> Any:
        from PIL import Image

        p, (h, w) = self.pre, self.size
        if p.resize is None and p.crop is None:
            return img.resize((w, h), Image.Resampling.BILINEAR)
        if p.resize is not None:
            if isinstance(p.resize, int):
                s = p.resize / min(img.size)
                img = img.resize((max(1, round(img.size[0] * s)), max(1, round(img.size[1] * s))), Image.Resampling.BILINEAR)
            else:
                img = img.resize((p.resize[1], p.resize[0]), Image.Resampling.BILINEAR)
        if p.crop is not None:
            iw, ih = img.size
            if iw < w or ih < h:  # smaller than the crop: scale up so the crop fits
                s = max(w / iw, h / ih)
                img = img.resize((max(w, round(iw * s)), max(h, round(ih * s))), Image.Resampling.BILINEAR)
                iw, ih = img.size
            if p.random_crop and rng is not None:
                left, top = int(rng.integers(0, iw - w + 1)), int(rng.integers(0, ih - h + 1))
            else:
                left, top = (iw - w) // 2, (ih - h) // 2
            img = img.crop((left, top, left + w, top + h))
        elif img.size != (w, h):
            img = img.resize((w, h), Image.Resampling.BILINEAR)
        return img


def open_image(source: Any) -> Any:
    """A path or bytes -> a decoded, upright Pillow image (errors propagate: the caller counts a skip)."""

    from PIL import Image, ImageOps

    img = Image.open(io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source)
    if img.size[0] * img.size[1] > (Image.MAX_IMAGE_PIXELS or 1 << 62):  # NOTE: a bomb is refused, not decoded
        raise Image.DecompressionBombError(f"{img.size[0]}x{img.size[1]} pixels is over Pillow's limit")
    img.load()
    return ImageOps.exif_transpose(img)


def to_color(img: Any, color: str) -> Any:
    """Any Pillow mode -> L or RGB. 16/32-bit images are scaled to 0..255 (a plain convert clips them)."""
    from PIL import Image

    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        a = np.asarray(img, dtype=np.float32)
        top = 65535.0 if img.mode.startswith("I;16") or (img.mode == "I" and a.max() > 255) else max(float(a.max()), 1.0)
        img = Image.fromarray(np.clip(a / top * 255.0, 0, 255).astype(np.uint8), "L")
    if img.mode == "P":
        img = img.convert("RGBA")
    if color == "L":
        return img if img.mode == "L" else img.convert("L")
    return img if img.mode == "RGB" else img.convert("RGB")


def preprocess_config(value: Any) -> Preprocess | None:
    if value is None:
        return None
    if isinstance(value, Preprocess):
        return value

    try:
        return Preprocess.model_validate(value)
    except ValidationError as exc:
        raise format_validation_error(exc, "preprocess") from exc


def image_inputs(specs: Sequence[Any]) -> list[Any]:
    """The inputs images can feed: 4-D float (or uint8) tensors."""
    return [s for s in specs if len(s.shape) == 4 and s.dtype in ("float32", "float16", "uint8")]
