"""OpenVINO backend (CPU).

``compile`` converts ONNX to OpenVINO IR (``model.openvino.xml`` + ``.bin``, weights kept in their
precision: no fp16 compression) — the artifact a device loads. A QDQ ONNX model from a quantization
pass arrives as FakeQuantize layers that OpenVINO's CPU plugin runs with int8 kernels, so INT8 for an
OpenVINO target comes either from ``nncf_ptq`` (NNCF) or from ``ptq_int8``'s QDQ model; the artifact
options record which.

Run-time settings come from the profile's ``openvino`` block: performance hint (latency or
throughput), inference precision (pinned to f32 by default: on CPUs with avx512_bf16 OpenVINO would
otherwise run "FP32" models in bf16), streams and a model cache directory; threads from ``threads``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np

from edgesmith._lazy import require
from edgesmith.errors import ConfigError, InputError
from edgesmith.model_io import PRODUCER_KEY
from edgesmith.runtime.base import Artifact, MeasuredInChild
from edgesmith.runtime.custom_ops import apply_registrations


def _int8_source(onnx_path: Path) -> str:
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    ops = {n.op_type for n in model.graph.node}
    if not {"QuantizeLinear", "DequantizeLinear"} & ops:
        return "none (float model)"
    producer = next((p.value for p in model.metadata_props if p.key == PRODUCER_KEY), "")
    return "QDQ ONNX from a quantization pass" + (f" ({producer})" if producer else "")


def check_device(core: Any, device: str) -> None:
    available = list(core.available_devices)
    if device.upper() not in available:
        raise ConfigError(f"OpenVINO has no device {device!r} on this machine", hint=f"available devices: {', '.join(available)}")


class _Collect:
    """Collects the extensions custom-op routes register (``convert_model`` takes them as a list)."""

    def __init__(self) -> None:
        self.items: list[Any] = []

    def add_extension(self, ext: Any) -> None:
        self.items.append(ext)


def _extensions(onnx_path: Path) -> dict[str, Any]:
    got = _Collect()
    apply_registrations("openvino", got, onnx_path)
    return {"extension": got.items} if got.items else {}


class OvSession:
    """Runs an IR as shipped (dynamic batch), as a plain application that loads it does. With the profile's
    ``static_shapes`` the model is compiled for each input shape it meets instead, as an application
    that reshapes to known shapes would (benchmark_app's ``-shape``): OpenVINO's CPU plugin pays
    per-inference shape handling on dynamic models (34.5 vs 41 us on the digits CNN here). Off by
    default since measured speed must be what loading the artifact gives: with it on, races flattered
    OpenVINO by 1.2x against plain timing. Past a few distinct shapes it keeps the dynamic model."""

    MAX_STATIC_SHAPES = 4

    def __init__(self, xml: Path, threads: int, options: dict[str, Any]):
        ov = require("openvino")
        self._core = ov.Core()
        apply_registrations("openvino", self._core, xml)  # an IR may hold custom ops of a compiled extension
        self._xml = xml
        device = options.get("device", "CPU").upper()
        check_device(self._core, device)
        self._device = device
        self._config: dict[str, Any] = {"PERFORMANCE_HINT": options.get("hint", "LATENCY").upper(), "INFERENCE_NUM_THREADS": threads}
        if options.get("inference_precision"):
            self._config["INFERENCE_PRECISION_HINT"] = options["inference_precision"]
        if options.get("streams"):
            self._config["NUM_STREAMS"] = options["streams"]
        if options.get("cache_dir"):
            self._core.set_property({"CACHE_DIR": str(options["cache_dir"])})
        self._static = options.get("static_shapes", False)
        self._by_shape: dict[tuple, Any] = {}
        self._dynamic_compiled: tuple[Any, Any] | None = None  # compiled only if used (not with static shapes)
        model = self._core.read_model(str(xml))
        self.input_names = [p.get_any_name() for p in model.inputs]
        self.output_names = [p.get_any_name() for p in model.outputs]

    @property
    def _dynamic(self) -> tuple[Any, Any]:
        if self._dynamic_compiled is None:
            self._dynamic_compiled = self._compile(None)
        return self._dynamic_compiled

    def _compile(self, shapes: dict[str, tuple] | None) -> tuple[Any, Any]:
        model = self._core.read_model(str(self._xml))
        if shapes:
            model.reshape(shapes)
        compiled = self._core.compile_model(model, self._device, self._config)
        return compiled, compiled.create_infer_request()

    def _for(self, feeds: dict[str, np.ndarray]) -> tuple[Any, Any]:
        if not self._static:
            return self._dynamic
        key = tuple(feeds[n].shape for n in self.input_names)
        got = self._by_shape.get(key)
        if got is None:
            if len(self._by_shape) >= self.MAX_STATIC_SHAPES:
                return self._dynamic
            got = self._by_shape[key] = self._compile({n: tuple(dims) for n, dims in zip(self.input_names, key)})
        return got

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        # NOTE: the compiled model's own call, outputs as a tuple in port order: the leanest plain call
        # (digits CNN: 42 us, against 51 us for InferRequest.infer and 58 us looking outputs up by port)
        compiled, _ = self._for(feeds)
        return list(compiled({name: feeds[name] for name in self.input_names}).to_tuple())

    def bind(self, feeds: dict[str, np.ndarray]):
        """Inputs set once (shared memory). The returned call runs inference and returns OpenVINO's own
        measurement of it (``InferRequest.latency``, what benchmark_app reports), in seconds."""
        ov = require("openvino")
        _, request = self._for(feeds)
        self._bound = [np.ascontiguousarray(feeds[name]) for name in self.input_names]  # keep alive
        for i, arr in enumerate(self._bound):
            request.set_input_tensor(i, ov.Tensor(arr, shared_memory=True))

        def infer() -> float:
            request.infer()
            return request.latency / 1e3

        return infer


class OpenVINOBackend(MeasuredInChild):
    name = "openvino"
    artifact_suffix = ".xml"
    runs_on_host_cpu = True

    def available(self) -> bool:
        return importlib.util.find_spec("openvino") is not None

    def compile(self, onnx_path: Path, out_path: Path, profile: Any, input_specs: Any = (), calibration: Any = None) -> Artifact:
        ov = require("openvino")
        device = getattr(profile, "device", "cpu") if profile is not None else "cpu"
        check_device(ov.Core(), device)
        model = ov.convert_model(str(onnx_path), **_extensions(onnx_path))
        ov.save_model(model, str(out_path), compress_to_fp16=False)
        settings = profile.openvino.model_dump() if profile is not None else {}
        return Artifact(out_path, self.name, {"device": device.upper(), **settings, "openvino": ov.__version__, "int8_from": _int8_source(onnx_path)})

    def input_specs(self, path: Path) -> list[dict]:
        """Input names/shapes/dtypes of an IR (dynamic dimensions become names)."""
        ov = require("openvino")
        specs = []
        core = ov.Core()
        apply_registrations(self.name, core, path)
        try:
            model = core.read_model(str(path))
        except Exception as exc:  # noqa: BLE001 - OpenVINO raises RuntimeError for any unreadable file
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            raise InputError(f"OpenVINO cannot read {Path(path).name}: {first}", hint="give an IR written by `edgesmith compile` (.xml with its .bin)") from exc
        for i, port in enumerate(model.inputs):
            dims = [d.get_length() if d.is_static else ("batch" if k == 0 else f"dim{k}") for k, d in enumerate(port.get_partial_shape())]
            specs.append({"name": port.get_any_name() or f"input_{i}", "shape": dims, "dtype": port.get_element_type().to_dtype().name})
        return specs

    def default_options(self) -> dict[str, Any]:
        return {"device": "CPU", "hint": "latency", "inference_precision": "f32"}

    def load(self, artifact: Artifact, threads: int) -> OvSession:
        return OvSession(artifact.path, threads, artifact.options)


BACKEND = OpenVINOBackend()
