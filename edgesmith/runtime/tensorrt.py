"""TensorRT backend, written to TensorRT's documented Python API (TensorRT 10).

NOT EXECUTED HERE: TensorRT's libraries come only from NVIDIA's own package index and cannot be
installed on the machines this project is built and tested on, and they have no GPU. What runs here
is everything that does not need TensorRT — translating a profile into builder settings, shape
profiles for dynamic inputs, batching calibration data — and those parts are unit-tested. The engine
build and the runner follow the API reference; treat them as untested until run on a GPU.

Flow: ``trt.Builder`` -> network from ONNX through ``trt.OnnxParser`` -> builder config (FP16 / INT8
flags, workspace limit, timing cache) -> one optimisation profile (min/opt/max per dynamic input) ->
``build_serialized_network`` -> ``model.tensorrt.engine`` (the artifact). INT8 is *explicit* when the
ONNX model carries Q/DQ nodes (from ``ptq_int8`` / ``nncf_ptq``), else implicit through an entropy
calibrator fed from the recipe's calibration data. The runner holds CUDA buffers (cuda-python) and
calls ``execute_async_v3``.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from edgesmith.errors import BackendUnavailable, ConfigError
from edgesmith.runtime.base import Artifact, MeasuredInChild

INSTALL_HINT = ("pip install 'edgesmith[tensorrt]' with NVIDIA's package index configured "
                "(TensorRT and cuda-python), on a machine with an NVIDIA GPU")


# ---- what runs without TensorRT (unit-tested) -------------------------------------------------

@dataclass(frozen=True)
class ShapeRange:
    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]


@dataclass(frozen=True)
class BuildSettings:
    fp16: bool
    int8: bool
    int8_mode: str  # "explicit" (Q/DQ in the model) | "calibrator" | "none"
    workspace_bytes: int
    shapes: dict[str, ShapeRange] = field(default_factory=dict)
    timing_cache: str | None = None


def shape_ranges(input_specs: Sequence[Any], batch_sizes: Sequence[int], declared: dict[str, dict] | None = None) -> dict[str, ShapeRange]:
    """min/opt/max for every input: the batch dimension spans the profile's batch sizes (opt = the
    first, the latency batch); any other dynamic dimension needs a range from the profile."""
    declared = declared or {}
    out = {}
    for spec in input_specs:
        dims_min, dims_opt, dims_max = [], [], []
        for i, d in enumerate(spec.shape):
            if isinstance(d, int):
                dims_min.append(d), dims_opt.append(d), dims_max.append(d)
            elif i == 0:
                dims_min.append(min(batch_sizes)), dims_opt.append(batch_sizes[0]), dims_max.append(max(batch_sizes))
            else:
                rng = declared.get(spec.name, {}).get(str(d))
                if rng is None:
                    raise ConfigError(f"input {spec.name!r} has a dynamic dimension {d!r} (axis {i}) and the profile gives no range for it",
                                      hint=f"add `tensorrt: {{shape_ranges: {{{spec.name}: {{{d}: [min, opt, max]}}}}}}` to the profile, or make it static")
                lo, mid, hi = rng
                if not 1 <= lo <= mid <= hi:
                    raise ConfigError(f"range for {spec.name}.{d} must satisfy 1 <= min <= opt <= max, got {list(rng)}", hint="fix the profile's tensorrt.shape_ranges")
                dims_min.append(lo), dims_opt.append(mid), dims_max.append(hi)
        out[spec.name] = ShapeRange(tuple(dims_min), tuple(dims_opt), tuple(dims_max))
    return out


def has_qdq(onnx_path: Path) -> bool:
    import onnx

    return any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in onnx.load(str(onnx_path), load_external_data=False).graph.node)


def build_settings(profile: Any, input_specs: Sequence[Any], onnx_path: Path, calibration: Any = None) -> BuildSettings:
    """Translate a profile (precisions, batch sizes, tensorrt block) into builder settings."""
    trt_cfg = profile.tensorrt
    explicit = has_qdq(onnx_path)
    int8 = explicit or ("int8" in profile.precisions and calibration is not None and trt_cfg.int8_calibration)
    if explicit and "int8" not in profile.precisions:
        raise ConfigError(f"the model carries Q/DQ (int8) nodes but profile {profile.name} does not allow int8", hint="add int8 to the profile's precisions")
    return BuildSettings(
        fp16="fp16" in profile.precisions,
        int8=bool(int8),
        int8_mode="explicit" if explicit else ("calibrator" if int8 else "none"),
        workspace_bytes=trt_cfg.workspace_mb * 2**20,
        shapes=shape_ranges(input_specs, profile.batch_sizes, trt_cfg.shape_ranges),
        timing_cache=trt_cfg.timing_cache,
    )


class CalibrationBatcher:
    """Fixed-size, contiguous float32 batches for TensorRT's calibrator (its API wants one batch size)."""

    def __init__(self, dataset: Any, input_names: Sequence[str], batch_size: int):
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        arrays = {n: np.concatenate([b.inputs[n] for b in dataset.batches]) for n in input_names}
        self.batch_size = batch_size
        self.count = len(next(iter(arrays.values()))) // batch_size
        if self.count == 0:
            raise ConfigError(f"calibration needs at least {batch_size} samples, got {len(next(iter(arrays.values())))}", hint="give more calibration data or a smaller batch")
        self._arrays = arrays

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        for i in range(self.count):
            sl = slice(i * self.batch_size, (i + 1) * self.batch_size)
            yield {n: np.ascontiguousarray(a[sl], dtype=np.float32) for n, a in self._arrays.items()}


# ---- what needs TensorRT and a GPU (not executed here) -----------------------------------------

def _trt():
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise BackendUnavailable(f"tensorrt is not installed ({exc})", hint=INSTALL_HINT) from exc
    return trt


def _cudart():
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        try:
            from cuda import cudart  # cuda-python < 12.6
        except ImportError as exc:
            raise BackendUnavailable(f"cuda-python is not installed ({exc})", hint=INSTALL_HINT) from exc
    return cudart


def _check(result: tuple) -> Any:
    err, *rest = result
    if int(err) != 0:
        raise BackendUnavailable(f"CUDA call failed with error {int(err)}", hint="check the GPU and driver (nvidia-smi)")
    return rest[0] if len(rest) == 1 else rest


def _make_calibrator(trt: Any, batcher: CalibrationBatcher, cache_path: Path) -> Any:
    cudart = _cudart()

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self):
            super().__init__()
            self._batches = iter(batcher)
            self._buffers: dict[str, int] = {}

        def get_batch_size(self) -> int:
            return batcher.batch_size

        def get_batch(self, names: list[str]) -> list[int] | None:
            batch = next(self._batches, None)
            if batch is None:
                return None
            for name in names:
                arr = batch[name]
                if name not in self._buffers:
                    self._buffers[name] = _check(cudart.cudaMalloc(arr.nbytes))
                _check(cudart.cudaMemcpy(self._buffers[name], arr.ctypes.data, arr.nbytes, cudart.cudaMemcpyKind.cudaMemcpyHostToDevice))
            return [self._buffers[n] for n in names]

        def read_calibration_cache(self) -> bytes | None:
            return cache_path.read_bytes() if cache_path.exists() else None

        def write_calibration_cache(self, cache: bytes) -> None:
            cache_path.write_bytes(bytes(cache))

    return EntropyCalibrator()


class TrtSession:
    """Deserialised engine + execution context + CUDA buffers (TensorRT 10 name-based I/O)."""

    def __init__(self, engine_path: Path):
        trt, cudart = _trt(), _cudart()
        self._cudart = cudart
        logger = trt.Logger(trt.Logger.WARNING)
        self._engine = trt.Runtime(logger).deserialize_cuda_engine(engine_path.read_bytes())
        self._context = self._engine.create_execution_context()
        self._stream = _check(cudart.cudaStreamCreate())
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        self.input_names = [n for n in names if self._engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.output_names = [n for n in names if n not in self.input_names]
        self._dtype = {n: np.dtype(trt.nptype(self._engine.get_tensor_dtype(n))) for n in names}
        self._device: dict[str, tuple[int, int]] = {}  # name -> (pointer, bytes)

    def _buffer(self, name: str, nbytes: int) -> int:
        ptr, size = self._device.get(name, (0, 0))
        if size < nbytes:
            if ptr:
                _check(self._cudart.cudaFree(ptr))
            ptr = _check(self._cudart.cudaMalloc(nbytes))
            self._device[name] = (ptr, nbytes)
        return ptr

    def _prepare(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        h2d = self._cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        for name in self.input_names:
            arr = np.ascontiguousarray(feeds[name], dtype=self._dtype[name])
            self._context.set_input_shape(name, arr.shape)
            ptr = self._buffer(name, arr.nbytes)
            _check(self._cudart.cudaMemcpyAsync(ptr, arr.ctypes.data, arr.nbytes, h2d, self._stream))
            self._context.set_tensor_address(name, ptr)
        outputs = {}
        for name in self.output_names:
            out = np.empty(tuple(self._context.get_tensor_shape(name)), dtype=self._dtype[name])
            self._context.set_tensor_address(name, self._buffer(name, out.nbytes))
            outputs[name] = out
        return outputs

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        outputs = self._prepare(feeds)
        self._context.execute_async_v3(self._stream)
        d2h = self._cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        for name, out in outputs.items():
            _check(self._cudart.cudaMemcpyAsync(out.ctypes.data, self._device[name][0], out.nbytes, d2h, self._stream))
        _check(self._cudart.cudaStreamSynchronize(self._stream))
        return [outputs[n] for n in self.output_names]

    def bind(self, feeds: dict[str, np.ndarray]):
        """Inputs copied to the GPU once; the returned call times enqueue + synchronise, as trtexec's GPU compute."""
        self._prepare(feeds)
        _check(self._cudart.cudaStreamSynchronize(self._stream))

        def infer() -> None:
            self._context.execute_async_v3(self._stream)
            _check(self._cudart.cudaStreamSynchronize(self._stream))

        return infer


class TensorRTBackend(MeasuredInChild):
    name = "tensorrt"
    artifact_suffix = ".engine"

    def available(self) -> bool:
        return importlib.util.find_spec("tensorrt") is not None

    def check_available(self) -> None:
        """Raise BackendUnavailable with the install hint unless TensorRT and a CUDA GPU are here."""
        _trt()
        count = _check(_cudart().cudaGetDeviceCount())
        if not count:
            raise BackendUnavailable("TensorRT is installed but no CUDA GPU is visible", hint="run on a machine with an NVIDIA GPU (nvidia-smi)")

    def input_specs(self, path: Path) -> list[dict]:
        session = TrtSession(path)
        engine = session._engine
        return [{"name": n, "shape": [d if d >= 0 else ("batch" if i == 0 else f"dim{i}") for i, d in enumerate(engine.get_tensor_shape(n))],
                 "dtype": session._dtype[n].name} for n in session.input_names]

    def default_options(self) -> dict[str, Any]:
        return {}

    def compile(self, onnx_path: Path, out_path: Path, profile: Any, input_specs: Sequence[Any] = (), calibration: Any = None) -> Artifact:
        trt = _trt()
        settings = build_settings(profile, input_specs, onnx_path, calibration)
        logger = trt.Logger(trt.Logger.WARNING)
        builder = trt.Builder(logger)
        network = builder.create_network(0)  # TensorRT 10: explicit batch is the only mode
        parser = trt.OnnxParser(network, logger)
        if not parser.parse_from_file(str(onnx_path)):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise ConfigError(f"TensorRT's ONNX parser rejected {onnx_path.name}: {errors[:300]}", hint="check the op against TensorRT's ONNX operator support")
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, settings.workspace_bytes)
        if settings.fp16:
            config.set_flag(trt.BuilderFlag.FP16)
        if settings.int8:
            config.set_flag(trt.BuilderFlag.INT8)
        if settings.int8_mode == "calibrator":
            names = [s.name for s in input_specs]
            batcher = CalibrationBatcher(calibration, names, profile.tensorrt.calibration_batch)
            config.int8_calibrator = _make_calibrator(trt, batcher, out_path.with_suffix(".calib.cache"))
        shape_profile = builder.create_optimization_profile()
        for name, rng in settings.shapes.items():
            shape_profile.set_shape(name, rng.min, rng.opt, rng.max)
        config.add_optimization_profile(shape_profile)
        cache_file = Path(settings.timing_cache) if settings.timing_cache else None
        cache = config.create_timing_cache(cache_file.read_bytes() if cache_file and cache_file.exists() else b"")
        config.set_timing_cache(cache, ignore_mismatch=False)
        engine = builder.build_serialized_network(network, config)
        if engine is None:
            raise ConfigError(f"TensorRT could not build an engine for {onnx_path.name}", hint="see TensorRT's log above; try fewer precisions")
        out_path.write_bytes(bytes(engine))
        if cache_file:
            cache_file.write_bytes(bytes(cache.serialize()))
        return Artifact(out_path, self.name, {"tensorrt": trt.__version__, "fp16": settings.fp16, "int8": settings.int8_mode,
                                              "shapes": {k: vars(v) for k, v in settings.shapes.items()}})

    def load(self, artifact: Artifact, threads: int) -> TrtSession:
        return TrtSession(artifact.path)



BACKEND = TensorRTBackend()
