"""Reference architectures defined in the project (torchvision is not usable here).

Factories are addressed as ``edgesmith.zoo:NAME`` in recipes and on the command line.
"""

from edgesmith.zoo.digits import digits_cnn, pretrained_digits_cnn
from edgesmith.zoo.digits32 import (
    digits_detector,
    digits_mobilenet,
    digits_prelu_heads,
    digits_resnet,
    trained_digits_detector,
    trained_digits_encoder,
    trained_digits_mobilenet,
    trained_digits_prelu_heads,
    trained_digits_resnet,
)
from edgesmith.zoo.easyocr import easyocr_detector, easyocr_recognizer, tiny_detector, tiny_recognizer
from edgesmith.zoo.encoder import bert_mini, digits_encoder
from edgesmith.zoo.mobilenet import mobilenet_v2
from edgesmith.zoo.resnet import resnet18
from edgesmith.zoo.segmentation import seg_student, seg_teacher

__all__ = [
    "digits_cnn",
    "pretrained_digits_cnn",
    "resnet18",
    "mobilenet_v2",
    "digits_resnet",
    "digits_mobilenet",
    "trained_digits_resnet",
    "trained_digits_mobilenet",
    "digits_prelu_heads",
    "trained_digits_prelu_heads",
    "digits_encoder",
    "trained_digits_encoder",
    "digits_detector",
    "trained_digits_detector",
    "bert_mini",
    "seg_teacher",
    "seg_student",
    "easyocr_recognizer",
    "easyocr_detector",
    "tiny_recognizer",
    "tiny_detector",
]
