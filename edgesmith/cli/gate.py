"""The CI gate: baseline save, check, report."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from edgesmith.cli.app import app, baseline_app
from edgesmith.cli.common import EXIT_BUDGET_FAILED, MlflowOpt, RichReporter, guarded


@baseline_app.command("save")
@guarded
def baseline_save(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN_DIR", help="Output directory of a validated `edgesmith run`.")],
    to: Annotated[Path, typer.Option("--to", help="Baseline file to write (JSON).")] = Path("baseline.json"),
    no_artifacts: Annotated[
        bool,
        typer.Option("--no-artifacts", help="Do not copy the compiled artifacts beside the baseline (check then compares against recorded latencies only)."),
    ] = False,
) -> None:
    """Record a run as the baseline: per target the accuracy metrics, every latency sample, artifact
    size and hash, peak memory; the recipe and library versions. The compiled artifacts are copied to
    BASELINE.artifacts/ beside it, so `check` can re-time them against a candidate on the same machine.

    Example: edgesmith baseline save edgesmith-out/demo --to baseline.json
    """
    from edgesmith.gate import save_baseline

    data = save_baseline(run_dir, to, copy_artifacts=not no_artifacts)
    n_files = sum(len(t["artifact"]["files"]) for t in data["targets"].values())
    copied = f", {n_files} artifact file(s) copied to {to.parent / (to.stem + '.artifacts')}" if not no_artifacts else ""
    print(f"baseline of {run_dir} ({', '.join(data['targets'])}) written to {to}{copied}")
    if data.get("verdict") == "fail":
        print(
            "note: this run failed its own profile budgets; the baseline records it as it is, and check judges later runs against it, not against the budgets",
            file=sys.stderr,
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
    strict: Annotated[bool, typer.Option("--strict", help="Count inconclusive latency checks as failures.")] = False,
    no_remeasure: Annotated[bool, typer.Option("--no-remeasure", help="Compare latency with the recorded samples only.")] = False,
    rounds: Annotated[int, typer.Option(min=2, max=1000, help="Interleaved rounds when re-timing baseline vs candidate.")] = 20,
    per_round: Annotated[int, typer.Option(min=1, max=10_000, help="Timed runs of each per round.")] = 10,
    latency_tolerance: Annotated[float | None, typer.Option(min=0.0, help="Allowed slowdown, e.g. 0.1 = 10% (default: the profile's gate).")] = None,
    accuracy_tolerance: Annotated[float | None, typer.Option(min=0.0, help="Allowed drop in points (default: the profile's budget).")] = None,
    mlflow: MlflowOpt = None,
) -> None:
    """Gate a run against a baseline: exit 0 when nothing regressed, 1 on a regression, 2 on bad input.

    Accuracy fails when its drop exceeds the profile's tolerance (and says when the difference is within
    sampling noise); latency re-times the baseline artifact and the candidate interleaved here and fails
    only when the whole confidence interval of the ratio lies beyond the tolerance: a noisy machine gives
    "inconclusive", not a failure (unless --strict); size and peak memory fail beyond their tolerances.
    Writes JUnit XML, a Markdown summary (also to $GITHUB_STEP_SUMMARY on GitHub Actions) and an HTML report.

    Example: edgesmith check out/pr --baseline baseline.json --out gate/
    """
    from edgesmith.gate import check_run
    from edgesmith.gate.publish import write_gate_outputs
    from edgesmith.outputs import check_writable

    out_dir = out or run_dir / "check"
    check_writable(out_dir)
    started = time.time()
    report = check_run(
        run_dir,
        baseline,
        force=force,
        remeasure=not no_remeasure,
        strict=strict,
        rounds=rounds,
        per_round=per_round,
        latency_tolerance=latency_tolerance,
        accuracy_tolerance=accuracy_tolerance,
        reporter=RichReporter(),
    )
    manifest = report.manifest
    written = write_gate_outputs(report, report.baseline, manifest, out_dir, time.time() - started)
    _print_gate(report)
    print(f"gate outputs: {', '.join(str(p) for p in written.values())}")
    if mlflow:
        from edgesmith.tracking import log_to_mlflow

        run_id = log_to_mlflow(mlflow, manifest, list(written.values()) + [run_dir / "manifest.json"], gate=report.as_dict())
        print(f"logged to MLflow {mlflow} (run {run_id})", file=sys.stderr)
    if report.verdict == "fail":
        raise typer.Exit(EXIT_BUDGET_FAILED)


def _print_gate(report: Any) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else 160)
    table = Table(title=escape(f"edgesmith check: {report.headline()}"), title_justify="left")
    for col in ("target", "metric", "baseline", "now", "delta", "budget", "verdict", "detail"):
        table.add_column(col, overflow="fold")
    style = {"fail": "bold red", "missing": "bold red", "inconclusive": "yellow", "pass": "green"}
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
    print(f"report written to {html}")
