"""Commands that time artifacts: bench, compare."""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from edgesmith.cli.app import app
from edgesmith.cli.common import InputOpt, OnOpt, RichReporter, guarded, parse_input, say_transfer
from edgesmith.schema import MAX_BATCH, MAX_ITERATIONS, MAX_SECONDS, MAX_THREADS
from edgesmith.terminal import console, say


class GraphOptimization(str, Enum):
    disable = "disable"
    basic = "basic"
    extended = "extended"
    all = "all"


@app.command()
@guarded
def bench(
    model: Annotated[Path, typer.Argument(help="Artifact to benchmark: .onnx (ONNX Runtime) or .xml (OpenVINO IR)")],
    backend: Annotated[
        str, typer.Option(help="Runtime: auto (from the file type) or any registered backend (`edgesmith backends` lists them, plugins included).")
    ] = "auto",
    target: Annotated[str | None, typer.Option("--target", "-t", help="Take threads and batch sizes from this profile.")] = None,
    threads: Annotated[int | None, typer.Option(min=1, max=MAX_THREADS, help="Intra-op threads (default: the profile's, else 2).")] = None,
    batch: Annotated[list[int] | None, typer.Option(min=1, max=MAX_BATCH, help="Batch size; repeatable (default: the profile's, else 1).")] = None,
    warmup: Annotated[int, typer.Option(min=0, max=MAX_ITERATIONS)] = 10,
    iterations: Annotated[int, typer.Option(min=1, max=MAX_ITERATIONS)] = 100,
    duration: Annotated[float | None, typer.Option(min=0.001, max=MAX_SECONDS, help="Seconds to run instead of a fixed count.")] = None,
    input_shape: InputOpt = None,
    optimization: Annotated[GraphOptimization, typer.Option(help="ONNX Runtime graph optimisation when loading.")] = GraphOptimization.all,
    until_stable: Annotated[bool, typer.Option("--until-stable", help="Repeat until the coefficient of variation is below --cv.")] = False,
    cv: Annotated[float, typer.Option(min=0.0, max=100.0, help="Noise threshold: coefficient of variation above it flags the run (0.1 = 10%).")] = 0.10,
    max_repeats: Annotated[int, typer.Option(min=1, max=100, help="Most repeats with --until-stable.")] = 5,
    inference_only: Annotated[
        bool,
        typer.Option(
            "--inference-only",
            help="Bind inputs once and time inference alone "
            "(OpenVINO's own latency), as benchmark_app/trtexec do; default: each plain API call, numpy in and out.",
        ),
    ] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    on: OnOpt = None,
) -> None:
    """Benchmark a model or compiled artifact: p50/p90/p95/p99, mean, std, throughput, peak memory, noise flag.

    Each measurement runs in a fresh process that imports only the runtime. Times are of each call as an
    application makes it (numpy in, numpy out), unless --inference-only. A run during which other
    processes competed for the cores is flagged BUSY.

    Examples:

        edgesmith bench model.onnx --threads 2 --batch 1 --batch 8

        edgesmith bench out/x86-avx512-vnni-ov/model.openvino.xml --target x86-avx512-vnni-ov --until-stable

        edgesmith bench model.onnx --on pi   (timed on the device `pi` over SSH: `edgesmith device add`)
    """
    import json

    from edgesmith.runtime.bench import bench_artifact

    shapes = [parse_input(i) for i in input_shape or []]
    timing = "bound" if inference_only else "call"
    options: dict[str, Any] = {
        "backend": backend,
        "threads": threads,
        "batches": batch,
        "warmup": warmup,
        "iterations": iterations,
        "duration_s": duration,
        "input_shapes": shapes,
        "ort_level": optimization.value,
        "until_stable": until_stable,
        "cv": cv,
        "max_repeats": max_repeats,
        "timing": timing,
    }
    if on is not None:
        from edgesmith.profiles import load_profile
        from edgesmith.remote import client

        rows, transfer = client.bench(on, model, options, load_profile(target) if target else None, reporter=RichReporter())
        say_transfer(on, transfer)
    else:
        if backend != "auto":
            from edgesmith.runtime import get_backend

            get_backend(backend)  # an unknown name lists the registered ones; a missing runtime names its extra
        rows = bench_artifact(
            model,
            backend,
            target=target,
            threads=threads,
            batches=batch,
            warmup=warmup,
            iterations=iterations,
            duration_s=duration,
            input_shapes=shapes,
            ort_level=optimization.value,
            until_stable=until_stable,
            cv_threshold=cv,
            max_repeats=max_repeats,
            reporter=RichReporter(),
            timing=timing,
        )
    if json_out:
        print(json.dumps(rows, indent=2))
        return
    from rich.table import Table

    where = f" on device {on}" if on else ""
    table = Table(title=f"{model.name} on {rows[0]['backend']}{where}, {rows[0]['threads']} threads (latency in ms)")
    cols = {
        "batch": "batch",
        "iterations": "runs",
        "p50_ms": "p50",
        "p90_ms": "p90",
        "p95_ms": "p95",
        "p99_ms": "p99",
        "mean_ms": "mean",
        "std_ms": "std",
        "throughput_per_s": "items/s",
        "peak_rss_mb": "RSS MB",
    }
    for header in [*cols.values(), "noise"]:
        table.add_column(header)
    for r in rows:
        machine = r.get("machine") or {}
        noise = f"BUSY: {'; '.join(machine.get('reasons', []))}" if machine.get("busy") else f"NOISY cv {r['cv']:.0%}" if r["noisy"] else f"ok cv {r['cv']:.0%}"
        if r.get("repeats", 1) > 1:
            noise += f", {r['repeats']} runs"
        table.add_row(*[f"{r[c]:.4g}" if isinstance(r[c], float) else str(r[c]) for c in cols], noise)
    console(width=None if sys.stdout.isatty() else 160).print(table)


@app.command()
@guarded
def compare(
    a: Annotated[Path, typer.Argument(help="Artifact A (the baseline): .onnx or .xml")],
    b: Annotated[Path, typer.Argument(help="Artifact B (the candidate): .onnx or .xml")],
    threads: Annotated[int, typer.Option(min=1, max=MAX_THREADS, help="Intra-op threads for both.")] = 2,
    batch: Annotated[int, typer.Option(min=1, max=MAX_BATCH)] = 1,
    rounds: Annotated[int, typer.Option(min=2, max=1000, help="Interleaved rounds (A then B in each).")] = 20,
    per_round: Annotated[int, typer.Option(min=1, max=10_000, help="Timed runs of each artifact per round.")] = 10,
    confidence: Annotated[float, typer.Option(min=0.5, max=0.999)] = 0.95,
    input_shape: InputOpt = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    on: OnOpt = None,
) -> None:
    """Interleaved A/B latency: the ratio B/A of median latencies with a bootstrap confidence interval.

    Both run in one process, alternating in rounds, so a noisy machine slows both alike.

    Example: edgesmith compare out/model.onnx out/x86-avx512-vnni-ort/model.onnxruntime.onnx --batch 1
    """
    import json

    if on is not None:
        from edgesmith.remote import client

        opts: dict[str, Any] = {"threads": threads, "batch": batch, "rounds": rounds, "per_round": per_round, "confidence": confidence}
        opts["input_shapes"] = [parse_input(i) for i in input_shape or []]
        remote, transfer = client.compare(on, a, b, opts, reporter=RichReporter())
        say_transfer(on, transfer)
        if json_out:
            print(json.dumps(remote, indent=2))
        else:
            say(f"on device {on}: A {a.name}: p50 {remote['a_p50_ms']:.4g} ms   B {b.name}: p50 {remote['b_p50_ms']:.4g} ms")
            say(remote["describe"])
        return
    from edgesmith.runtime.bench import artifact_for, make_feeds
    from edgesmith.runtime.compare import compare as run_compare

    art_a, specs = artifact_for(a, [parse_input(i) for i in input_shape or []])
    art_b, specs_b = artifact_for(b, [parse_input(i) for i in input_shape or []])
    if [s.name for s in specs] != [s.name for s in specs_b]:
        from edgesmith.errors import InputError

        raise InputError(
            f"{a.name} and {b.name} have different inputs ({[s.name for s in specs]} vs {[s.name for s in specs_b]})",
            hint="compare two builds of the same model",
        )
    with RichReporter().step(f"comparing {a.name} (A) and {b.name} (B): {rounds} rounds x {per_round} runs"):
        result = run_compare(art_a, art_b, make_feeds(specs, batch), threads, rounds, per_round, confidence=confidence)
    if json_out:
        print(json.dumps(result.as_dict(), indent=2))
    else:
        say(f"A {a.name}: p50 {result.a_p50_ms:.4g} ms   B {b.name}: p50 {result.b_p50_ms:.4g} ms")
        say(result.describe())
