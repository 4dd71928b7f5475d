"""TensorRT backend (EXPERIMENTAL), written to TensorRT's documented Python API for TensorRT 10.1 - 10.x (``tensorrt>=10.1,<11``).

NOT EXECUTED HERE: TensorRT's libraries come only from NVIDIA's own package index and cannot be
installed on the machines this project is built and tested on, and they have no GPU. What runs here
is everything that does not need TensorRT — translating a profile into builder settings, shape
profiles for dynamic inputs, batching calibration data — and those parts are unit-tested. The engine
build and the runner follow the API reference; treat them as untested until run on a GPU.

Flow: ``trt.Builder`` -> a **strongly typed** network from ONNX through ``trt.OnnxParser`` -> builder
config (workspace limit, timing cache) -> one optimisation profile (min/opt/max per dynamic input,
covering every batch that will run) -> ``build_serialized_network`` -> ``model.tensorrt.engine``.
Precision comes from the ONNX model itself: INT8 only as *explicit* quantization (Q/DQ nodes from
``ptq_int8``, which a TensorRT profile makes signed int8 with zero point 0, as TensorRT requires),
FP16 only from an fp16 model. Implicit-quantization calibrators (deprecated since TensorRT 10.1,
removed in 11) and builder precision flags are not used, and TF32 (on by default in the builder) is
cleared, so the float reference engine is really FP32. Weights pruned 2:4 (``prune_nm``) get
``SPARSE_WEIGHTS``. Every builder and runtime result is checked (``add_optimization_profile``,
``set_timing_cache``, ``build_serialized_network``, ``deserialize_cuda_engine``,
``create_execution_context``, ``set_input_shape``, ``set_tensor_address``, ``execute_async_v3``). The
engine records the TensorRT version and the GPU it was built for; loading it anywhere else is refused
(an engine is specific to both). The runner keeps each input's own dtype (int64 token ids stay int64),
runs batches larger than the engine's profile in chunks, and frees its CUDA buffers and stream.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgesmith.errors import BackendUnavailable, ConfigError
from edgesmith.outputs import atomic_write_bytes
from edgesmith.runtime.base import Artifact, MeasuredInChild

INSTALL_HINT = "pip install 'edgesmith[tensorrt]' with NVIDIA's package index configured (TensorRT and cuda-python), on a machine with an NVIDIA GPU"


# ---- what runs without TensorRT (unit-tested) -------------------------------------------------


@dataclass(frozen=True)
class ShapeRange:
    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]


# the largest batch the engine must take besides the profile's: the evaluation data's (recipes default to 32)
EVAL_BATCH = 32


@dataclass(frozen=True)
class BuildSettings:
    int8_mode: str  # "explicit" (Q/DQ in the model) | "none"
    workspace_bytes: int
    strongly_typed: bool = True  # precision from the ONNX types; no builder FP16/INT8 flags
    shapes: dict[str, ShapeRange] = field(default_factory=dict)
    timing_cache: str | None = None


def shape_ranges(input_specs: Sequence[Any], batch_sizes: Sequence[int], declared: dict[str, dict] | None = None) -> dict[str, ShapeRange]:
    """min/opt/max for every input: the batch dimension spans the profile's batch sizes and the
    evaluation batch (opt = the first, the latency batch); any other dynamic dimension needs a range
    from the profile."""
    declared = declared or {}
    batches = [*batch_sizes, EVAL_BATCH]
    out = {}
    for spec in input_specs:
        dims_min, dims_opt, dims_max = [], [], []
        for i, d in enumerate(spec.shape):
            if isinstance(d, int):
                lo, mid, hi = d, d, d
            elif i == 0:  # NOTE: min 1: a single sample must run whatever batch sizes the profile times
                lo, mid, hi = 1, batch_sizes[0], max(batches)
            else:
                rng = declared.get(spec.name, {}).get(str(d))
                if rng is None:
                    raise ConfigError(
                        f"input {spec.name!r} has a dynamic dimension {d!r} (axis {i}) and the profile gives no range for it",
                        hint=f"add `tensorrt: {{shape_ranges: {{{spec.name}: {{{d}: [min, opt, max]}}}}}}` to the profile, or make it static",
                    )
                lo, mid, hi = rng
                if not 1 <= lo <= mid <= hi:
                    raise ConfigError(
                        f"range for {spec.name}.{d} must satisfy 1 <= min <= opt <= max, got {list(rng)}", hint="fix the profile's tensorrt.shape_ranges"
                    )
            dims_min.append(lo)
            dims_opt.append(mid)
            dims_max.append(hi)
        out[spec.name] = ShapeRange(tuple(dims_min), tuple(dims_opt), tuple(dims_max))
    return out


def qdq_zero_points_ok(onnx_path: Path) -> list[str]:
    """Q/DQ nodes TensorRT's explicit quantization rejects: every one must be signed int8 with a constant zero
    point of 0 and a constant positive scale. A QuantizeLinear without a zero point makes uint8 (the ONNX
    default); a zero point or scale computed at run time cannot be checked, so it is refused too."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(onnx_path), load_external_data=False)
    inits = {i.name: i for i in model.graph.initializer}
    consts = {n.output[0]: n.attribute[0].t for n in model.graph.node if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value"}
    bad = []
    for n in model.graph.node:
        if n.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        zp_name = n.input[2] if len(n.input) > 2 else ""
        zp = inits.get(zp_name) or consts.get(zp_name)
        scale = inits.get(n.input[1]) if len(n.input) > 1 else None
        scale = scale if scale is not None else consts.get(n.input[1]) if len(n.input) > 1 else None
        if zp is None or zp.data_type != onnx.TensorProto.INT8 or numpy_helper.to_array(zp).any():
            bad.append(n.name or n.output[0])
        elif scale is None or not (numpy_helper.to_array(scale) > 0).all():
            bad.append(n.name or n.output[0])
    return bad


def has_2to4_sparsity(onnx_path: Path, min_size: int = 1024) -> bool:
    """Some weight (a Conv/Gemm/MatMul initializer of at least ``min_size`` values) has at most 2 non-zeros in
    every group of 4 along its input channels: what TensorRT's sparse tensor cores run (``SPARSE_WEIGHTS``)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(onnx_path), load_external_data=False)
    inits = {i.name: i for i in model.graph.initializer}
    for n in model.graph.node:
        if n.op_type not in ("Conv", "Gemm", "MatMul") or len(n.input) < 2 or n.input[1] not in inits:
            continue
        w = numpy_helper.to_array(inits[n.input[1]])
        if w.size < min_size or w.ndim < 2:
            continue
        k_axis = 1 if n.op_type == "Conv" or (n.op_type == "Gemm" and any(a.name == "transB" and a.i for a in n.attribute)) else 0
        k = np.moveaxis(w, k_axis, -1)
        if k.shape[-1] % 4 == 0 and (np.count_nonzero(k.reshape(*k.shape[:-1], -1, 4), axis=-1) <= 2).all():
            return True
    return False


def check_engine_match(options: dict[str, Any], trt_version: str, gpu: str) -> None:
    """An engine runs only with the TensorRT version and on the GPU it was built for: refuse any other."""
    built_v, built_gpu = options.get("tensorrt"), options.get("gpu")
    if built_v is None or built_gpu is None:
        raise ConfigError("this TensorRT engine does not say which TensorRT and GPU built it", hint="rebuild it with this version of edgesmith")
    if built_v != trt_version or built_gpu != gpu:
        raise ConfigError(
            f"this engine was built with TensorRT {built_v} for {built_gpu}; this is TensorRT {trt_version} on {gpu}",
            hint="rebuild the engine here (an engine is specific to its TensorRT version and GPU)",
        )


def has_qdq(onnx_path: Path) -> bool:
    import onnx

    return any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in onnx.load(str(onnx_path), load_external_data=False).graph.node)


def build_settings(profile: Any, input_specs: Sequence[Any], onnx_path: Path, calibration: Any = None) -> BuildSettings:
    """Translate a profile (precisions, batch sizes, tensorrt block) into builder settings. ``calibration``
    is not used: INT8 is explicit (Q/DQ in the model) or absent."""
    trt_cfg = profile.tensorrt
    explicit = has_qdq(onnx_path)
    if explicit and "int8" not in profile.precisions:
        raise ConfigError(f"the model carries Q/DQ (int8) nodes but profile {profile.name} does not allow int8", hint="add int8 to the profile's precisions")
    bad = qdq_zero_points_ok(onnx_path) if explicit else []
    if bad:
        raise ConfigError(
            f"TensorRT's explicit quantization takes signed int8 with zero point 0; {len(bad)} Q/DQ node(s) differ (e.g. {bad[0]})",
            hint="quantize for the TensorRT profile (its quantization block asks ptq_int8 for symmetric int8)",
        )
    return BuildSettings(
        int8_mode="explicit" if explicit else "none",
        workspace_bytes=trt_cfg.workspace_mb * 2**20,
        shapes=shape_ranges(input_specs, profile.batch_sizes, trt_cfg.shape_ranges),
        timing_cache=trt_cfg.timing_cache,
    )


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


def gpu_name() -> str:
    """The current CUDA device as an engine is specific to it: name and compute capability."""
    cudart = _cudart()
    device = _check(cudart.cudaGetDevice())
    props = _check(cudart.cudaGetDeviceProperties(device))
    name = props.name.decode() if isinstance(props.name, bytes) else str(props.name)
    return f"{name.strip(chr(0))} (sm_{props.major}{props.minor})"


class TrtSession:
    """Deserialised engine + execution context + CUDA buffers (TensorRT 10 name-based I/O); ``close()`` (or
    garbage collection) frees the buffers and the stream."""

    def __init__(self, engine_path: Path):
        trt, cudart = _trt(), _cudart()
        self._cudart = cudart
        self._device: dict[str, tuple[int, int]] = {}  # name -> (pointer, bytes)
        self._stream = None
        logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(logger)
        self._engine = self._runtime.deserialize_cuda_engine(engine_path.read_bytes())
        if self._engine is None:
            raise ConfigError(
                f"TensorRT could not deserialise {engine_path.name}", hint="it is damaged, or built by another TensorRT or for another GPU: rebuild it"
            )
        self._context = self._engine.create_execution_context()
        if self._context is None:
            raise BackendUnavailable("TensorRT could not create an execution context", hint="the GPU may be out of memory; check nvidia-smi")
        self._stream = _check(cudart.cudaStreamCreate())
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        self.input_names = [n for n in names if self._engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.output_names = [n for n in names if n not in self.input_names]
        self._dtype = {n: np.dtype(trt.nptype(self._engine.get_tensor_dtype(n))) for n in names}

    def close(self) -> None:
        """Free every CUDA buffer and the stream (idempotent)."""
        for ptr, _ in self._device.values():
            if ptr:
                self._cudart.cudaFree(ptr)
        self._device.clear()
        if self._stream is not None:
            self._cudart.cudaStreamDestroy(self._stream)
            self._stream = None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001, S110 - interpreter shutdown: CUDA may be gone already
            pass

    def _buffer(self, name: str, nbytes: int) -> int:
        ptr, size = self._device.get(name, (0, 0))
        if size < nbytes:
            if ptr:
                _check(self._cudart.cudaFree(ptr))
            ptr = _check(self._cudart.cudaMalloc(nbytes))
            self._device[name] = (ptr, nbytes)
        return ptr

    def _input(self, name: str, value: np.ndarray) -> np.ndarray:
        want = self._dtype[name]
        if np.asarray(value).dtype.kind != want.kind and not (want.kind in "iu" and np.asarray(value).dtype.kind in "iu"):
            raise ConfigError(f"input {name!r} is {np.asarray(value).dtype}, the engine takes {want}", hint="feed the model's own input dtype")
        return np.ascontiguousarray(value, dtype=want)

    def _prepare(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        h2d = self._cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        for name in self.input_names:
            arr = self._input(name, feeds[name])
            if not self._context.set_input_shape(name, arr.shape):
                raise ConfigError(
                    f"TensorRT rejected input shape {list(arr.shape)} for {name!r}", hint="the shape is outside the engine's optimisation profile"
                )
            ptr = self._buffer(name, arr.nbytes)
            _check(self._cudart.cudaMemcpyAsync(ptr, arr.ctypes.data, arr.nbytes, h2d, self._stream))
            if not self._context.set_tensor_address(name, ptr):
                raise BackendUnavailable(f"TensorRT did not accept the buffer for {name!r}", hint="check the GPU and TensorRT version")
        outputs = {}
        for name in self.output_names:
            out = np.empty(tuple(self._context.get_tensor_shape(name)), dtype=self._dtype[name])
            if not self._context.set_tensor_address(name, self._buffer(name, out.nbytes)):
                raise BackendUnavailable(f"TensorRT did not accept the buffer for {name!r}", hint="check the GPU and TensorRT version")
            outputs[name] = out
        return outputs

    def _max_batch(self) -> int:
        name = self.input_names[0]
        return int(self._engine.get_tensor_profile_shape(name, 0)[2][0])

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Outputs for ``feeds``; a batch larger than the engine's profile runs in chunks of its maximum."""
        n, top = len(next(iter(feeds.values()))), self._max_batch()
        if n > top:
            parts = [self._run_once({k: v[i : i + top] for k, v in feeds.items()}) for i in range(0, n, top)]
            return [np.concatenate([p[j] for p in parts]) for j in range(len(parts[0]))]
        return self._run_once(feeds)

    def _execute(self) -> None:
        if not self._context.execute_async_v3(self._stream):
            raise BackendUnavailable("TensorRT's execute_async_v3 failed", hint="see TensorRT's log; check the engine against this GPU and driver")

    def _run_once(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        outputs = self._prepare(feeds)
        self._execute()
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
            self._execute()
            _check(self._cudart.cudaStreamSynchronize(self._stream))

        return infer


class TensorRTBackend(MeasuredInChild):
    name = "tensorrt"
    artifact_suffix = ".engine"
    experimental = True  # until it has run on a GPU (none here): `edgesmith backends` says so

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
        return [
            {
                "name": n,
                "shape": [d if d >= 0 else ("batch" if i == 0 else f"dim{i}") for i, d in enumerate(engine.get_tensor_shape(n))],
                "dtype": session._dtype[n].name,
            }
            for n in session.input_names
        ]

    def default_options(self) -> dict[str, Any]:
        return {}

    def compile(self, onnx_path: Path, out_path: Path, profile: Any, input_specs: Sequence[Any] = (), calibration: Any = None) -> Artifact:
        trt = _trt()
        settings = build_settings(profile, input_specs, onnx_path, calibration)
        logger = trt.Logger(trt.Logger.WARNING)
        builder = trt.Builder(logger)
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if settings.strongly_typed else 0
        network = builder.create_network(flags)  # TensorRT 10: explicit batch is the only mode
        parser = trt.OnnxParser(network, logger)
        if not parser.parse_from_file(str(onnx_path)):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise ConfigError(f"TensorRT's ONNX parser rejected {onnx_path.name}: {errors[:300]}", hint="check the op against TensorRT's ONNX operator support")
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, settings.workspace_bytes)
        # NOTE: strongly typed: no FP16/INT8 builder flags (precision is the model's own), no calibrator; TF32 (set by
        # default) would run FP32 convolutions and matmuls with 10-bit mantissas: the float reference must be FP32
        config.clear_flag(trt.BuilderFlag.TF32)
        sparse = has_2to4_sparsity(onnx_path)
        if sparse:
            config.set_flag(trt.BuilderFlag.SPARSE_WEIGHTS)  # 2:4-pruned weights on the sparse tensor cores
        shape_profile = builder.create_optimization_profile()
        for name, rng in settings.shapes.items():
            shape_profile.set_shape(name, rng.min, rng.opt, rng.max)
        if config.add_optimization_profile(shape_profile) < 0:
            raise ConfigError(f"TensorRT refused the shape profile {settings.shapes}", hint="check the profile's batch sizes and tensorrt.shape_ranges")
        cache_file = Path(settings.timing_cache) if settings.timing_cache else None
        cache = config.create_timing_cache(cache_file.read_bytes() if cache_file and cache_file.exists() else b"")
        if not config.set_timing_cache(cache, ignore_mismatch=False):
            raise ConfigError(f"TensorRT refused the timing cache {cache_file}", hint="it was written by another TensorRT or GPU: delete it")
        engine = builder.build_serialized_network(network, config)
        if engine is None:
            raise ConfigError(f"TensorRT could not build an engine for {onnx_path.name}", hint="see TensorRT's log above; try fewer precisions")

        atomic_write_bytes(out_path, bytes(engine))
        if cache_file:
            atomic_write_bytes(cache_file, bytes(cache.serialize()))
        return Artifact(
            out_path,
            self.name,
            {
                "tensorrt": trt.__version__,
                "gpu": gpu_name(),
                "tf32": False,
                "sparse_weights": sparse,
                "strongly_typed": settings.strongly_typed,
                "int8": settings.int8_mode,
                "shapes": {k: vars(v) for k, v in settings.shapes.items()},
            },
        )

    def load(self, artifact: Artifact, threads: int) -> TrtSession:
        check_engine_match(artifact.options, _trt().__version__, gpu_name())
        return TrtSession(artifact.path)


BACKEND = TensorRTBackend()
