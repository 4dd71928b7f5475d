"""torch -> ONNX export, structural checks, and the parity check against torch."""

from edgesmith.export.onnx_export import ParityResult, check_parity, example_inputs, export_onnx

__all__ = ["ParityResult", "check_parity", "example_inputs", "export_onnx"]
