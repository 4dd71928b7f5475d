"""A small CNN for scikit-learn's 8x8 handwritten digits, and its bundled checkpoint.

The checkpoint ``weights/digits_cnn.safetensors`` is reproduced by::

    python -m edgesmith.zoo.train_digits --out edgesmith/zoo/weights/digits_cnn.safetensors
"""

from __future__ import annotations

from pathlib import Path

WEIGHTS = Path(__file__).with_name("weights") / "digits_cnn.safetensors"


def digits_cnn(width: int = 32, num_classes: int = 10):
    """Conv-BN-ReLU x3 with one pooling step, global pooling and a linear head. Input 1x8x8."""
    import torch.nn as nn

    def block(cin: int, cout: int) -> list:
        return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

    return nn.Sequential(
        *block(1, width),
        *block(width, 2 * width),
        nn.MaxPool2d(2),
        *block(2 * width, 4 * width),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4 * width, num_classes),
    )


def pretrained_digits_cnn():
    """``digits_cnn()`` with the bundled trained weights (98%+ top-1 on the held-out digits)."""
    from safetensors.torch import load_file

    model = digits_cnn()
    model.load_state_dict(load_file(str(WEIGHTS)))
    return model.eval()


# Input specs the pipeline uses when a recipe names these factories without `inputs:`.
digits_cnn.input_spec = [{"name": "input", "shape": ["batch", 1, 8, 8], "dtype": "float32"}]
pretrained_digits_cnn.input_spec = digits_cnn.input_spec
# The data they were made for: what a command uses when no --data is given (the 8x8 digits, train split to
# calibrate, test split to evaluate). Any model without such defaults needs -d.
digits_cnn.defaults = pretrained_digits_cnn.defaults = {"data": {"calibration": {"source": "digits"}, "evaluation": {"source": "digits"}}}
