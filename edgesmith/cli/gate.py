"""The CI gate: baseline save, check, report."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from edgesmith.cli.app import app, baseline_app
from edgesmith.cli.common import EXIT_BUDGET_FAILED, MlflowOpt, RichReporter, guarded, say_transfer
from edgesmith.terminal import console as terminal_console
from edgesmith.terminal import say

DeviceMeasuredOpt = Annotated[
    str | None,
    typer.Option(
        "--device",
        metavar="DEVICE",
        help="The run as this device measured it over SSH (validated there first unless `validate RUN --on DEVICE` recorded it already).",
    ),
]


@baseline_app.command("save")
@guarded
def baseline_save(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN_DIR", help="Output directory of a validated `edgesmith run`.")],
    to: Annotated[Path, typer.Option("--to", help="Baseline file to write (JSON).")] = Path("baseline.json"),
    no_artifacts: Annotated[
        bool,
        typer.Option("--no-artifacts", help="Do not copy the compiled artifacts beside the baseline (check then compares against recorded latencies only)."),
    ] = False,
    metric_rule: Annotated[
        list[str] | None,
        typer.Option(
            "--metric-rule",
            metavar="NAME=higher|lower:TOL",
            help="Declare how a task metric is gated, e.g. bleu=higher:0.5pt or wer=lower:1% (append :optional if a run may lack it). Needed for metrics edgesmith does not know.",
        ),
    ] = None,
    device: DeviceMeasuredOpt = None,
) -> None:
    """Record a run as the baseline: per target the accuracy metrics, every latency sample, artifact
    size and hash, peak memory — and the whole bar the gate will judge by (the profile's content,
    every tolerance with its unit and direction, the evaluation data's content hash and count,
    batches, threads, versions), sealed with a digest. The compiled artifacts are copied to
    BASELINE.artifacts/ beside it, so `check` can re-time them against a candidate on the same
    machine; a copy goes to BASELINE.history/ for `check --history N`.

    Examples:
      edgesmith baseline save edgesmith-out/demo --to baseline.json
      edgesmith baseline save out/mt --to gate/baseline.json --metric-rule bleu=higher:0.5pt
      edgesmith baseline save out/main --to baseline.json --device pi   (the run as the device measured it)
    """
    from edgesmith.gate import save_baseline
    from edgesmith.gate.bar import parse_rule_option

    rules = dict(parse_rule_option(r) for r in metric_rule or [])
    if device is not None:
        _measured_on(device, run_dir)
    data = save_baseline(run_dir, to, copy_artifacts=not no_artifacts, rules=rules, device=device)
    n_files = sum(len(t["artifact"]["files"]) for t in data["targets"].values())
    copied = f", {n_files} artifact file(s) copied to {to.parent / (to.stem + '.artifacts')}" if not no_artifacts else ""
    say(f"baseline of {run_dir} ({', '.join(data['targets'])}) written to {to}{copied}")
    if data.get("verdict") == "fail":
        say(
            "note: this run failed its own profile budgets; the baseline records it as it is, and check judges later runs against it, not against the budgets",
            err=True,
        )


@app.command()
@guarded
def check(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN_DIR", help="Output directory of the run to gate.")],
    baseline: Annotated[Path, typer.Option("--baseline", "-b", help="Baseline file from `edgesmith baseline save`.")] = Path("baseline.json"),
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Where to write check.json, junit.xml, summary.md, report.html (default: RUN_DIR/check).")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Compare even if the baseline comes from another model or recipe.")] = False,
    strict: Annotated[bool, typer.Option("--strict", help="Same as --inconclusive fail.")] = False,
    inconclusive: Annotated[
        str | None,
        typer.Option(
            "--inconclusive",
            metavar="fail|warn|pass",
            help="What a check the data cannot decide does to the verdict: fail (exit 1), warn (verdict INCONCLUSIVE, exit 0; the default), pass.",
        ),
    ] = None,
    accept_bar_change: Annotated[
        bool,
        typer.Option(
            "--accept-bar-change", help="Accept differences between this run's bar (profile, data, tolerances) and the baseline's; recorded in the report."
        ),
    ] = False,
    history: Annotated[
        int, typer.Option("--history", min=0, max=1000, help="Also judge against the oldest of the last N accepted baselines (slow drift).")
    ] = 0,
    no_remeasure: Annotated[bool, typer.Option("--no-remeasure", help="Compare latency with the recorded samples only.")] = False,
    rounds: Annotated[int, typer.Option(min=2, max=1000, help="Interleaved rounds when re-timing baseline vs candidate.")] = 20,
    per_round: Annotated[int, typer.Option(min=1, max=10_000, help="Timed runs of each per round.")] = 10,
    latency_tolerance: Annotated[float | None, typer.Option(min=0.0, help="Allowed slowdown, e.g. 0.1 = 10% (default: the profile's gate).")] = None,
    accuracy_tolerance: Annotated[float | None, typer.Option(min=0.0, help="Allowed drop in points (default: the profile's budget).")] = None,
    mlflow: MlflowOpt = None,
    device: DeviceMeasuredOpt = None,
) -> None:
    """Gate a run against a baseline: exit 0 when nothing regressed, 1 on a regression, 2 on bad input.

    The bar is the baseline's: its profile, tolerances, data and batches. A run whose own profile or
    data differ is listed and fails unless --accept-bar-change. Every gated measure is judged: task
    metrics (top-1 by a paired test on per-sample answers), cosine, output fidelity, decision agreement,
    size, peak memory, latency per batch (baseline and candidate re-timed interleaved here; only a
    ratio whose whole confidence interval is beyond the tolerance fails). A measure the bar names and
    the run lacks fails. What the data cannot decide is inconclusive: --inconclusive says what it does
    (default warn: verdict INCONCLUSIVE, exit 0). Writes JUnit XML, a Markdown summary (also to
    $GITHUB_STEP_SUMMARY on GitHub Actions) and an HTML report.

    Examples:
      edgesmith check out/pr --baseline baseline.json --out gate/
      edgesmith check out/pr -b baseline.json --history 10 --inconclusive fail
      edgesmith check out/pr -b baseline.json --device pi   (validated and re-timed on the device over SSH)
    """
    from edgesmith.gate import check_run
    from edgesmith.gate.publish import write_gate_outputs
    from edgesmith.outputs import check_writable

    out_dir = out or run_dir / "check"
    check_writable(out_dir)
    if mlflow:
        from edgesmith.tracking import check_tracking_uri

        check_tracking_uri(mlflow)
    started = time.time()
    timer = None
    if device is not None:
        from edgesmith.remote import client

        _measured_on(device, run_dir)
        timer = client.pair_timer(device)
    report = check_run(
        run_dir,
        baseline,
        force=force,
        remeasure=not no_remeasure,
        strict=strict,
        inconclusive=inconclusive,
        accept_bar_change=accept_bar_change,
        history=history,
        rounds=rounds,
        per_round=per_round,
        latency_tolerance=latency_tolerance,
        accuracy_tolerance=accuracy_tolerance,
        reporter=RichReporter(),
        device=device,
        pair_timer=timer,
    )
    manifest = report.manifest
    written = write_gate_outputs(report, report.baseline, manifest, out_dir, time.time() - started)
    _print_gate(report)
    say(f"gate outputs: {', '.join(str(p) for p in written.values())}")
    if mlflow:
        from edgesmith.tracking import log_to_mlflow

        run_id = log_to_mlflow(mlflow, manifest, list(written.values()) + [run_dir / "manifest.json"], gate=report.as_dict())
        from edgesmith.errors import redact

        say(f"logged to MLflow {redact(mlflow)} (run {run_id})", err=True)
    if report.verdict == "inconclusive":
        say(
            f"warning: {report.count('inconclusive')} check(s) inconclusive: the measurement could not decide; verdict INCONCLUSIVE, exit 0 "
            "(--inconclusive fail makes it a failure)",
            err=True,
        )
    if report.verdict == "fail":
        raise typer.Exit(EXIT_BUDGET_FAILED)


def _print_gate(report: Any) -> None:
    from rich.markup import escape
    from rich.table import Table

    console = terminal_console(width=None if sys.stdout.isatty() else 160)
    table = Table(title=escape(f"edgesmith check: {report.headline()}"), title_justify="left")
    for col in ("target", "metric", "baseline", "now", "delta", "budget", "verdict", "detail"):
        table.add_column(col, overflow="fold")
    style = {"fail": "bold red", "missing": "bold red", "inconclusive": "yellow", "accepted": "yellow", "pass": "green"}
    fmt = lambda v: "—" if v is None else (f"{v:.4g}" if isinstance(v, float) else str(v))  # noqa: E731
    for f in report.sorted_findings():
        table.add_row(
            escape(f.target),
            escape(f.metric),
            fmt(f.baseline),
            fmt(f.now),
            escape(f.delta),
            escape(f.budget),
            f"[{style.get(f.status, 'dim')}]{f.status.upper()}[/]",
            escape(f.detail),
        )
    console.print(table)
    for c in report.changes:
        console.print(f"changed since the baseline: {escape(c)}")
    for c in report.bar_changes:
        console.print(f"[yellow]bar changed (accepted): {escape(c)}[/]")
    if report.forced_over:
        console.print(f"[yellow]forced past: {escape('; '.join(report.forced_over))}[/]")


@app.command()
@guarded
def report(
    run_dirs: Annotated[list[Path], typer.Argument(metavar="RUN_DIR...", help="One or more run directories (e.g. one per recipe or pass).")],
    html: Annotated[Path, typer.Option("--html", help="HTML file to write.")] = Path("edgesmith-report.html"),
    baseline: Annotated[Path | None, typer.Option("--baseline", "-b", help="Also plot this baseline (hollow points).")] = None,
) -> None:
    """Write one self-contained HTML report across runs: accuracy vs latency vs size (Pareto view),
    latency distributions, per-layer sensitivity where a pass recorded it, and every budget.

    Example: edgesmith report out/int8 out/fp16 --html compare.html
    """
    from edgesmith.gate.baseline import load_baseline, load_run
    from edgesmith.outputs import atomic_write_text, check_writable
    from edgesmith.reporting.document import to_html
    from edgesmith.reporting.runs import runs_report

    check_writable(html.parent)
    runs = [(d.name or str(d), load_run(d)) for d in run_dirs]
    atomic_write_text(html, to_html(runs_report(runs, baseline=load_baseline(baseline) if baseline else None)))
    say(f"report written to {html}")


def _measured_on(device: str, run_dir: Path) -> None:
    """The run validated on ``device`` (over SSH) and recorded in it, unless it was already."""
    from edgesmith.outputs import load_manifest
    from edgesmith.remote import client

    if device in (load_manifest(run_dir).get("devices") or {}):
        return
    result, transfer = client.validate(device, run_dir, None, RichReporter())
    say_transfer(device, transfer)
    client.record(run_dir, result)
