"""Compression passes. One technique = one file exporting ``PASS = PassInfo(...)``.

A pass module keeps torch/onnxruntime imports inside its ``apply`` so the registry can be
listed (for ``--help`` and recipe validation) without loading any heavy library.
Third-party passes register through the ``edgesmith.passes`` entry-point group, each entry
naming a module that defines ``PASS``.
"""

from edgesmith.compress.registry import PassContext, PassInfo, build_pass_config, get_pass, known_passes

__all__ = ["PassContext", "PassInfo", "build_pass_config", "get_pass", "known_passes"]
