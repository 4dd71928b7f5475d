"""The report of runs as one ``Report``: one run (``report.md``, ``report.html`` and ``report.junit.xml`` beside
its manifest) or several side by side (``edgesmith report``). The plots (accuracy vs latency vs size with the
Pareto front, latency distributions, per-layer sensitivity) are HTML-only sections; the gate adds them to its
own report too (``figure_sections``)."""

from __future__ import annotations

from typing import Any

from edgesmith.report import Markup, md, md_code, verdict_rows
from edgesmith.reporting import svg
from edgesmith.reporting.document import Check, Report, Section, Table
from edgesmith.reporting.html import latency_plots, pareto_points


def runs_report(runs: list[tuple[str, dict]], baseline: dict | None = None, title: str | None = None) -> Report:
    """``runs``: (label, manifest) pairs; one run reads as report.md always did."""
    one = len(runs) == 1
    first = runs[0][1]
    name = first["recipe"]["name"]
    facts: list[Any] = []
    if one:
        facts = [
            f"- verdict: **{first['verdict'].upper()}**",
            f"- model: {md(first['recipe']['model']['source'])}",
            f"- passes: {md(', '.join(p['type'] for p in first['recipe']['passes'])) or 'none'}",
            f"- edgesmith {first['versions'].get('edgesmith')}, onnxruntime {first['versions'].get('onnxruntime')}, torch {first['versions'].get('torch')}",
        ]
    else:
        for label, m in runs:
            passes = ", ".join(p["type"] for p in m["recipe"].get("passes", [])) or "none"
            facts.append(
                f"- {md(label)}: **{str(m.get('verdict', '?')).upper()}** recipe {md_code(m['recipe']['name'])}, model {md_code(m['recipe']['model']['source'])}, "
                f"passes {md(passes)}; edgesmith {md(m.get('versions', {}).get('edgesmith'))}, {md((m.get('host') or {}).get('cpu', ''))}"
            )
    sections: list[Section] = []
    for label, m in runs:
        sections += run_sections(m, "" if one else f"{label} · ")
    sections += figure_sections(runs, baseline)
    checks = [c for label, m in runs for c in budget_checks(m, "" if one else label)]
    return Report(
        title or (f"edgesmith run: {md(name)}" if one else f"edgesmith report: {md(name)}"), first.get("verdict", "?"), facts, [], sections, checks, first
    )


def run_sections(m: dict, prefix: str = "") -> list[Section]:
    out = []
    exp = m.get("export")
    if exp:
        lines = [
            f"- {md(exp['path'])} (opset {exp['opset']}, {exp['exporter']} exporter, {exp['mb']:.3f} MB)",
            f"- parity ONNX Runtime vs torch: {md(exp['parity'])}",
        ]
        params = m.get("parameters")
        if params:
            changed = " (the architecture changed: re-exported and parity re-checked against the changed model)" if params.get("architecture_changed") else ""
            count = lambda n: f"{n:,}" if isinstance(n, int) else "—"  # noqa: E731
            lines.append(f"- parameters: float model {count(params.get('float'))}, after torch passes {count(params.get('after_torch_passes'))}{changed}")
        out.append(Section(f"{prefix}Export", lines))
    for name, t in m.get("targets", {}).items():
        out += _target(name, t, prefix)
    return out


def _target(name: str, t: dict, prefix: str) -> list[Section]:
    lines = [md(t["profile"]["description"])]
    if t.get("estimated"):
        lines.append("Budgets of this profile are **estimates**, not measured on the device.")
    rows = verdict_rows(t)
    table = Table(["metric", "value", "float reference", "budget", "verdict", "detail"], rows, [r[4].split()[0].lower() for r in rows])
    out = [Section(f"{prefix}Target {md(name)} — {t['verdict'].upper()}", lines, table)]
    arts = [f"- {md(a['path'])} — {md(a['what'])}, {a['mb']:.3f} MB" for a in t.get("artifacts", [])]
    if t.get("size"):
        s = t["size"]
        arts.append(f"- size: float ONNX {s['fp32_mb']:.3f} MB → compressed ONNX {s['compressed_mb']:.3f} MB ({s['ratio']:.2f}× smaller)")
        if "deflate_ratio" in s:
            arts.append(
                f"- compressed download (deflate): {s['fp32_deflate_mb']:.3f} MB → {s['compressed_deflate_mb']:.3f} MB "
                f"({s['deflate_ratio']:.2f}× smaller); sparse weights shrink what ships, not what a dense runtime loads"
            )
    out.append(Section("Artifacts", arts, level=3))
    if t.get("latency"):
        out.append(
            Section("Latency (ms; compressed and FP32 timed interleaved in one process, each call as an application makes it)", table=_latency(t), level=3)
        )
    if t.get("notes"):
        out.append(Section("Notes", [f"- {md(n)}" for n in t["notes"]], level=3))
    return out


def _latency(t: dict) -> Table:
    table = Table(["model", "batch", "p50", "p90", "p99", "mean", "std", "throughput/s", "speed-up (p50)", "peak RSS MB", "noise"])
    fp32 = t["latency"].get("fp32", {})
    for which, per_batch in t["latency"].items():
        for b, s in per_batch.items():
            speedup = fp32[b]["p50_ms"] / s["p50_ms"] if b in fp32 else float("nan")
            machine = s.get("machine") or {}
            noise = (
                "BUSY MACHINE: " + "; ".join(machine.get("reasons", []))
                if machine.get("busy")
                else f"noisy (cv {s['cv']:.0%})"
                if s.get("cv", 0) > 0.1
                else "ok"
            )
            cells = [which, b, *(f"{s[k]:.3f}" for k in ("p50_ms", "p90_ms", "p99_ms", "mean_ms", "std_ms")), f"{s['throughput_per_s']:.1f}"]
            table.rows.append([*cells, f"{speedup:.2f}x", f"{s['peak_rss_mb']:.0f}", noise])
    return table


def budget_checks(m: dict, label: str = "") -> list[Check]:
    """Each budget of each target judged in a run: a JUnit test case (n/a budgets are not tests)."""
    out = []
    for name, t in m.get("targets", {}).items():
        suite = f"edgesmith.{label + '.' if label else ''}{name}"
        for v, row in zip(t.get("verdicts", []), verdict_rows(t)):
            status = {"pass": "pass", "fail": "fail", "inconclusive": "skipped"}.get(v["status"])
            if status:
                msg = f"{v['status']}: {row[0]} {row[1]} (float {row[2]}), budget {row[3]}"
                out.append(Check(suite, row[0], status, msg, v.get("detail", ""), "budget"))
    return out


def figure_sections(runs: list[tuple[str, dict]], baseline: dict | None, gate: dict | None = None) -> list[Section]:
    out = []
    points, acc = pareto_points(runs, baseline)
    if points:
        plot = svg.scatter_pareto(
            "pareto", f"{acc} vs p50 latency", points, "p50 latency, ms (first batch size)", "top-1 accuracy, %" if acc == "top1" else "cosine vs float outputs"
        )
        why = (
            "Each point is a model on a target; bubble area is artifact size; the dashed line joins the Pareto-optimal points "
            "(no other point is both faster and more accurate); hollow points are the baseline."
        )
        out.append(Section("Accuracy vs latency vs size", [why], figures=[plot], html_only=True))
    plots = latency_plots(runs[0][1], gate)
    out.append(Section("Latency distributions", [] if plots else ["No latency samples were recorded."], figures=plots, html_only=True))
    sens = [
        (name, t["details"]["sensitivity"])
        for name, t in runs[0][1].get("targets", {}).items()
        if isinstance((t.get("details") or {}).get("sensitivity"), dict) and t["details"]["sensitivity"]
    ]
    if sens:
        figs = [
            svg.hbars(
                f"sensitivity-{name}",
                f"{name}: loss when the layer alone is quantized",
                [(str(k), float(v)) for k, v in s.items()],
                "sensitivity (higher: keep in higher precision)",
            )
            for name, s in sens
        ]
        out.append(Section("Per-layer sensitivity", figures=figs, html_only=True))
    return out


__all__ = ["Markup", "budget_checks", "figure_sections", "run_sections", "runs_report"]
