"""report.md and the console verdict table, both from the manifest."""

from __future__ import annotations

from typing import Any

# how gate findings sort, worst first (the terminal table, Markdown summary and HTML report agree)
STATUS_RANK = {"fail": 0, "missing": 1, "inconclusive": 2, "new": 3, "pass": 4, "info": 5}


def md(text: Any) -> str:
    """Text from recipes, models, profiles or plugins, made inert in Markdown: no raw HTML (``<`` and
    ``&`` become entities), no table breaks (``|``), no code-span or emphasis breakouts, one line."""
    out = " ".join(str(text).split())
    # NOTE: "_" stays (inside words it never starts emphasis in CommonMark) and so does ">" (no tag opens
    # without "<"; our lines never start with it, so it is no blockquote either)
    for a, b in (("&", "&amp;"), ("<", "&lt;"), ("|", "\\|"), ("`", "&#96;"), ("*", "\\*"), ("[", "\\[")):
        out = out.replace(a, b)
    return out


class Markup(str):
    """Markdown the writer composed itself (bold, a code span): a table row keeps it as it is."""


def md_code(text: Any) -> Markup:
    """A code span safe inside a table cell: one line, no backtick to close it early, ``|`` escaped (GFM
    splits cells on it even inside code)."""
    return Markup("`" + " ".join(str(text).split()).replace("`", "'").replace("|", "\\|") + "`")


def md_row(cells: Any) -> str:
    """One table row; every cell that is not ``Markup`` is escaped with ``md`` (labels, errors, reasons
    and settings come from recipes, models and plugins). Every report's tables are written with it."""
    return "| " + " | ".join(c if isinstance(c, Markup) else md(c) for c in cells) + " |"


def md_table(headers: list[str]) -> list[str]:
    return [md_row([Markup(h) for h in headers]), "|" + "---|" * len(headers)]


def _fmt(v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        if v != v or v in (float("inf"), float("-inf")):
            return str(v)
        return f"{v:.4g}"
    return str(v)


def _metric_label(v: dict) -> str:
    return v["metric"] + (f" (batch {v['batch']})" if v.get("batch") else "")


def budget_text(v: dict) -> str:
    b = f"{v['budget']:g}"
    return {"max-degradation": f"drop <= {b} pt", "max-relative-degradation": f"drop <= {b}%", "min": f">= {b}", "max": f"<= {b}"}[v["goal"]]


def verdict_rows(target: dict) -> list[list[str]]:
    rows = []
    for v in target.get("verdicts", []):
        status = v["status"].upper() + (" (estimate)" if v.get("estimate") and v["status"] != "n/a" else "")
        detail = v.get("detail", "")
        if detail.startswith((">=", "<=")):  # the budget column says that much; keep what follows (the interval)
            detail = detail.partition("; ")[2]
        rows.append([_metric_label(v), _fmt(v["value"]), _fmt(v["reference"]), budget_text(v), status, detail])
    return rows


def render_markdown(manifest: dict) -> str:
    lines = [f"# edgesmith run: {md(manifest['recipe']['name'])}", ""]
    lines += [
        f"- verdict: **{manifest['verdict'].upper()}**",
        f"- model: {md(manifest['recipe']['model']['source'])}",
        f"- passes: {md(', '.join(p['type'] for p in manifest['recipe']['passes'])) or 'none'}",
        f"- edgesmith {manifest['versions'].get('edgesmith')}, onnxruntime {manifest['versions'].get('onnxruntime')}, torch {manifest['versions'].get('torch')}",
        "",
    ]
    exp = manifest.get("export")
    if exp:
        lines += [
            "## Export",
            "",
            f"- {md(exp['path'])} (opset {exp['opset']}, {exp['exporter']} exporter, {exp['mb']:.3f} MB)",
            f"- parity ONNX Runtime vs torch: {md(exp['parity'])}",
            "",
        ]
    params = manifest.get("parameters")
    if params:
        changed = " (the architecture changed: re-exported and parity re-checked against the changed model)" if params.get("architecture_changed") else ""
        count = lambda n: f"{n:,}" if isinstance(n, int) else "—"  # noqa: E731
        lines += [f"- parameters: float model {count(params.get('float'))}, after torch passes {count(params.get('after_torch_passes'))}{changed}", ""]
    for name, t in manifest.get("targets", {}).items():
        lines += [f"## Target {md(name)} — {t['verdict'].upper()}", "", md(t["profile"]["description"]), ""]
        if t.get("estimated"):
            lines += ["> Budgets of this profile are **estimates**, not measured on the device.", ""]
        lines += md_table(["metric", "value", "float reference", "budget", "verdict", "detail"])
        lines += [md_row(r) for r in verdict_rows(t)]
        lines += ["", "### Artifacts", ""]
        for a in t.get("artifacts", []):
            lines.append(f"- {md(a['path'])} — {md(a['what'])}, {a['mb']:.3f} MB")
        if t.get("size"):
            s = t["size"]
            lines.append(f"- size: float ONNX {s['fp32_mb']:.3f} MB → compressed ONNX {s['compressed_mb']:.3f} MB ({s['ratio']:.2f}× smaller)")
            if "deflate_ratio" in s:
                lines.append(
                    f"- compressed download (deflate): {s['fp32_deflate_mb']:.3f} MB → {s['compressed_deflate_mb']:.3f} MB "
                    f"({s['deflate_ratio']:.2f}× smaller); sparse weights shrink what ships, not what a dense runtime loads"
                )
        if t.get("latency"):
            lines += [
                "",
                "### Latency (ms; compressed and FP32 timed interleaved in one process, each call as an application makes it)",
                "",
                *md_table(["model", "batch", "p50", "p90", "p99", "mean", "std", "throughput/s", "speed-up (p50)", "peak RSS MB", "noise"]),
            ]
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
                    lines.append(md_row([*cells, f"{speedup:.2f}x", f"{s['peak_rss_mb']:.0f}", noise]))
        if t.get("notes"):
            lines += ["", "### Notes", ""] + [f"- {md(n)}" for n in t["notes"]]
        lines.append("")
    return "\n".join(lines)


def print_verdicts(manifest: dict, out_dir: str, console: Any = None) -> None:
    import sys

    from rich.console import Console
    from rich.table import Table

    # NOTE: piped output (CI logs) gets a wide table instead of rich's 80-column default
    console = console or Console(width=None if sys.stdout.isatty() else 140)
    for name, t in manifest.get("targets", {}).items():
        from rich.markup import escape

        table = Table(title=escape(f"{name}: {t['verdict'].upper()}"), title_justify="left")
        for col in ("metric", "value", "float", "budget", "verdict", "detail"):
            table.add_column(col, overflow="fold")
        for row in verdict_rows(t):
            style = {"PASS": "green", "FAIL": "bold red"}.get(row[4].split()[0], "yellow")
            table.add_row(*(escape(c) for c in row[:4]), f"[{style}]{escape(row[4])}[/]", escape(row[5]))
        console.print(table)
    console.print(f"verdict: [bold]{manifest['verdict'].upper()}[/]  artifacts and report: {escape(out_dir)}")
