"""edgesmith: trained PyTorch models -> compressed ONNX -> per-target runtimes, validated.

Importing this package is cheap: torch, onnxruntime and openvino load only inside the
modules that need them (see ``edgesmith._lazy``).
"""

__version__ = "0.1.0"
