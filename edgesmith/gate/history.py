"""``check --history N``: the candidate against the last N accepted baselines, for slow drift.

Each ``baseline save`` keeps a copy in ``<baseline>.history/``. A pull request that costs 1% at a time
passes a gate against the previous baseline every time; against the oldest of the last N accepted
baselines the drift adds up, and fails with the baseline's own rule. The values over the window are
the report's trend table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgesmith.gate.bar import rules_of
from edgesmith.gate.baseline import load_baseline, load_history

TREND_METRICS = ("artifact_mb", "peak_memory_mb", "speedup_vs_fp32@1")


def drift_findings(baseline_path: Path, last: int, manifest: dict[str, Any], report: Any) -> list[dict[str, Any]]:
    """Per target and gated metric, the candidate against the oldest accepted baseline in the window (the
    fields of a gate ``Finding``); fills ``report.history`` with the trend."""
    window = load_history(baseline_path, last)
    if not window:
        report.notes.append(f"--history {last}: no accepted baselines in {baseline_path.stem}.history/ yet (each `baseline save` adds one)")
        return []
    current = load_baseline(baseline_path)
    out = []
    for name, target in sorted(manifest["targets"].items()):
        base_t = current["targets"].get(name)
        if base_t is None:
            continue
        rules = rules_of(base_t["bar"])
        shown = list(rules) + [m for m in TREND_METRICS if m in (target.get("metrics") or {})]
        rows = [
            {"baseline": stem, "created": b.get("created"), **{m: ((b["targets"].get(name) or {}).get("metrics") or {}).get(m) for m in shown}}
            for stem, b in window
        ]
        rows.append({"baseline": "now", "created": None, **{m: (target.get("metrics") or {}).get(m) for m in shown}})
        report.history.append({"target": name, "metrics": shown, "rows": rows})
        oldest_stem, oldest = window[0]
        old_t = oldest["targets"].get(name)
        if old_t is None:
            continue
        for metric, rule in sorted(rules.items()):
            b, v = (old_t.get("metrics") or {}).get(metric), (target.get("metrics") or {}).get(metric)
            if b is None or v is None:
                continue
            worse, allowed = rule.worse_by(b, v), rule.allowed(b)
            status = "fail" if worse > allowed + 1e-9 else "pass"
            out.append(
                {
                    "target": name,
                    "metric": f"{metric} over the last {len(window)} baselines",
                    "kind": "drift",
                    "baseline": b,
                    "now": v,
                    "delta": f"{v - b:+.3g}",
                    "budget": rule.text(),
                    "status": status,
                    "detail": f"against the oldest accepted baseline in the window ({oldest_stem}, saved {oldest.get('created')}): "
                    + ("a slow drift, each step within the tolerance, adds up past it" if status == "fail" else "no drift beyond the tolerance"),
                    "excess": (worse - allowed) / max(allowed, 1e-9),
                }
            )
    return out
