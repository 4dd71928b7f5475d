"""Target profiles: data about a device and the budgets an artifact must meet there.

Goals have the shape of Olive's MetricGoal::

    {metric: top1, goal: max-degradation, value: 0.5}      # at most 0.5 points below float
    {metric: latency_p90_ms, goal: max, value: 15, batch: 1}
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import Field, model_validator

from edgesmith.errors import ConfigError
from edgesmith.schema import MAX_BATCH, MAX_THREADS, Strict

GoalKind = Literal["max-degradation", "max-relative-degradation", "min", "max"]
# Formats are an open set (a pass declares what it produces, see compress.contract.KNOWN_FORMATS);
# a profile lists the ones its target runs.
Precision = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9:._-]*$", max_length=40)]

# Metrics the evaluator computes itself; anything else must come from a user metric.
LATENCY_METRICS = ("latency_p50_ms", "latency_p90_ms", "latency_p95_ms", "latency_p99_ms", "latency_mean_ms")
BUILTIN_METRICS = ("top1", "cosine", "sqnr_db", "output_fidelity", "decision_agreement", "artifact_mb", "peak_memory_mb", "speedup_vs_fp32") + LATENCY_METRICS


class Goal(Strict):
    metric: str
    goal: GoalKind
    value: float
    batch: int | None = Field(default=None, description="batch size a latency goal applies to (default: the first)")

    @model_validator(mode="after")
    def _check(self) -> Goal:
        if not math.isfinite(self.value):
            raise ValueError(f"a budget needs a finite value, got {self.value} for {self.metric!r}")
        if self.goal.endswith("degradation") and self.value < 0:
            raise ValueError(f"a {self.goal} goal needs a value >= 0, got {self.value}")
        if self.batch is not None and self.metric not in LATENCY_METRICS + ("speedup_vs_fp32",):
            raise ValueError(f"'batch' only applies to latency metrics, not {self.metric!r}")
        return self


class Hardware(Strict):
    arch: Literal["x86_64", "aarch64"]
    isa: list[str] = []
    cores: int | None = None
    description: str = ""


class QuantDefaults(Strict):
    """How integer kernels are fastest on this target; passes use these unless a recipe overrides."""

    activation_type: Literal["uint8", "int8"] = "uint8"
    weight_type: Literal["int8", "uint8"] = "int8"
    per_channel: bool = True
    reduce_range: bool = False
    symmetric_activations: bool = False  # zero point 0 (TensorRT's explicit quantization needs it)
    rationale: str = ""


class OpenVINOSettings(Strict):
    """Run-time settings for OpenVINO targets (ignored by other backends)."""

    hint: Literal["latency", "throughput"] = "latency"
    # NOTE: OpenVINO's CPU plugin silently runs float models in bf16 on CPUs with avx512_bf16 (as this
    # one has): pin f32 so "fp32" means fp32; a profile may opt into bf16/f16, or null for OpenVINO's default.
    inference_precision: Literal["f32", "bf16", "f16"] | None = "f32"
    streams: int | None = Field(default=None, ge=1, description="None: what the hint picks")
    static_shapes: bool = Field(
        default=False,
        description="compile per input shape met, as an application that reshapes to "
        "known shapes would (benchmark_app -shape); off: the IR as shipped, as a plain application loading it runs it",
    )
    cache_dir: str | None = None


class TensorRTSettings(Strict):
    """Builder settings for TensorRT targets (ignored by other backends)."""

    workspace_mb: int = Field(default=1024, ge=16)
    timing_cache: str | None = None
    # per input, per named dynamic dimension: [min, opt, max] (the batch dimension comes from batch_sizes)
    shape_ranges: dict[str, dict[str, list[int]]] = {}


TOLERANCE_FORMAT = "'0.5 pt' (absolute, in the metric's own unit) or '1%' (relative to the baseline's value)"


def parse_tolerance(text: str) -> tuple[float, str]:
    """``'0.5 pt'`` -> (0.5, "abs"); ``'1%'`` -> (1.0, "rel%"). A bare number has no unit and is refused."""
    t = str(text).strip().lower().replace(" ", "")
    for suffix, unit in (("points", "abs"), ("point", "abs"), ("pt", "abs"), ("abs", "abs"), ("%", "rel%")):
        if t.endswith(suffix):
            try:
                value = float(t[: -len(suffix)])
            except ValueError:
                break
            if value < 0 or value != value:
                break
            return value, unit
    raise ValueError(f"tolerance {text!r} needs a unit: write {TOLERANCE_FORMAT}")


class MetricRule(Strict):
    """How a task metric is gated: which way is better and how far it may move the wrong way."""

    direction: Literal["higher", "lower"] = Field(description="higher or lower is better")
    tolerance: str = Field(description=f"how far it may move the wrong way: {TOLERANCE_FORMAT}")
    optional: bool = Field(default=False, description="a run without this metric is not a failure")

    @model_validator(mode="after")
    def _check(self) -> MetricRule:
        parse_tolerance(self.tolerance)
        return self


class GateTolerances(Strict):
    """How far a new run may fall behind a stored baseline before ``edgesmith check`` fails it."""

    accuracy_drop: float | None = Field(
        default=None, ge=0, description=("points a task metric may drop; None: the profile's degradation budget for that metric, else 0.5")
    )
    cosine_drop: float = Field(default=0.002, ge=0, description="how much the fidelity cosine may drop")
    latency_ratio: float = Field(default=1.10, ge=1.0, description="now/baseline latency beyond which a slowdown fails")
    size_ratio: float = Field(default=1.05, ge=1.0, description="now/baseline artifact size beyond which it fails")
    memory_ratio: float = Field(default=1.10, ge=1.0, description="now/baseline peak memory beyond which it fails")
    memory_slack_mb: float = Field(default=8.0, ge=0, description="memory growth always allowed (allocator noise)")
    confidence: float = Field(default=0.95, gt=0.5, lt=1.0, description="of the latency ratio's interval and the noise tests")
    fidelity_drop: float = Field(default=0.01, ge=0, description="how much output_fidelity (R² against the float model) may drop")
    decision_drop: float = Field(default=0.01, ge=0, description="how much decision_agreement (share of top-1 answers kept) may drop")
    metrics: dict[str, MetricRule] = Field(
        default={}, description="task metrics: direction and tolerance (built-in defaults for known names; required for others)"
    )
    optional: list[str] = Field(default=[], description="measures a run may lack without failing the gate (e.g. peak_memory_mb)")


class Profile(Strict):
    name: str
    description: str = ""
    # which runtime (edgesmith.runtime registry, plugins included); an unknown one is refused before any work
    backend: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", max_length=60)
    device: str = "cpu"
    hardware: Hardware
    threads: int = Field(default=2, ge=1, le=MAX_THREADS)
    batch_sizes: list[Annotated[int, Field(ge=1, le=MAX_BATCH)]] = Field(default=[1], min_length=1)
    precisions: list[Precision] = ["fp32", "int8"]
    quantization: QuantDefaults = QuantDefaults()
    graph_optimization: Literal["disable", "basic", "extended", "all"] = "all"
    openvino: OpenVINOSettings = OpenVINOSettings()
    tensorrt: TensorRTSettings = TensorRTSettings()
    budgets: list[Goal] = []
    gate: GateTolerances = GateTolerances()
    estimated: bool = Field(default=False, description="budgets are estimates, not measured on the device")
    notes: str = ""

    @model_validator(mode="after")
    def _check(self) -> Profile:
        if not self.batch_sizes or any(b < 1 for b in self.batch_sizes):
            raise ValueError(f"batch_sizes must be positive integers, got {self.batch_sizes}")
        for g in self.budgets:
            if g.batch is not None and g.batch not in self.batch_sizes:
                raise ValueError(f"budget {g.metric} names batch {g.batch}, not in batch_sizes {self.batch_sizes}")
        return self

    def for_fixed_batch(self, batch: int | None, name: str) -> tuple[Profile, str | None]:
        """This profile for a model that takes batches of exactly ``batch``: timed at that batch only (and a note
        saying so); a budget set at another batch cannot be judged and is refused by name."""
        if batch is None or self.batch_sizes == [batch]:
            return self, None
        other = sorted({g.batch for g in self.budgets if g.batch is not None and g.batch != batch})
        if other:
            raise ConfigError(
                f"target {name} has budgets at batch {other}, but the model takes batches of exactly {batch}",
                hint=f"export the model with a dynamic batch (a name such as 'batch'), or set the budgets' batch to {batch}",
            )
        note = f"[{name}] the model takes batches of exactly {batch}: timed at batch {batch} only (the profile lists {self.batch_sizes})"
        return self.with_overrides(None, None, [batch]), note

    def with_overrides(self, budgets: list[Goal] | None, threads: int | None, batch_sizes: list[int] | None) -> Profile:
        """Recipe-level overrides: a budget for a metric replaces the profile's budgets for that metric."""
        data = self.model_dump()
        if budgets:
            replaced = {(g.metric, g.batch) for g in budgets}
            kept = [g.model_dump() for g in self.budgets if (g.metric, g.batch) not in replaced]
            data["budgets"] = kept + [g.model_dump() for g in budgets]
        if threads:
            data["threads"] = threads
        if batch_sizes:
            data["batch_sizes"] = batch_sizes
            data["budgets"] = [g for g in data["budgets"] if g["batch"] is None or g["batch"] in batch_sizes]
        return Profile.model_validate(data)
