"""The HTML page every report is written into (reporting/document.py's HTML writer): self-contained (no network,
no external scripts); and the data of the runs' plots (reporting/runs.py).

Plots: accuracy vs latency vs artifact size across targets, passes and runs with the Pareto front
(the baseline as hollow points); latency distributions, baseline vs now (or FP32 vs compressed);
per-layer sensitivity where a quantization pass recorded one (``details["sensitivity"]`` of a target:
``{layer: score}``). A small script adds tooltips and sortable tables and checks, in the browser,
that every plot drew its marks (``data-drawn`` on each plot, ``data-script-errors`` on the body).
"""

from __future__ import annotations

from html import escape

from edgesmith.reporting import svg

CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,sans-serif;margin:24px auto;max-width:1080px;color:#222;padding:0 16px}
h1{font-size:22px}h2{font-size:18px;margin-top:32px;border-bottom:1px solid #ddd;padding-bottom:4px}
table{border-collapse:collapse;margin:8px 0;font-size:13px}th,td{border:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f5f5f5;cursor:pointer;user-select:none}td.num{text-align:right;font-variant-numeric:tabular-nums}
.s-fail,.s-missing{background:#fde2e2;font-weight:600}.s-inconclusive{background:#fff4d6}.s-pass{background:#e5f6e5}.s-new,.s-info{background:#eef3fb}
.badge{display:inline-block;padding:2px 10px;border-radius:10px;font-weight:700;color:#fff}.b-pass{background:#2e7d32}.b-fail{background:#c62828}.b-other{background:#8d6e00}
svg.plot{border:1px solid #eee;margin:6px 6px 6px 0;background:#fff}svg .frame{fill:none;stroke:#999}svg .grid{stroke:#eee}
svg .tick{font-size:11px;fill:#555}svg .label{font-size:12px;fill:#333}svg .ptitle{font-size:13px;font-weight:600}svg .legend{font-size:11px}
svg .front{fill:none;stroke:#444;stroke-dasharray:5 4;stroke-width:1.5}svg .onfront{stroke-width:3}
#tip{position:fixed;pointer-events:none;background:#222;color:#fff;padding:4px 8px;border-radius:4px;font-size:12px;display:none;max-width:420px}
.muted{color:#666}code{background:#f4f4f4;padding:1px 4px}
"""

# NOTE: registered first, so an error in any later script is recorded where a test (or a person) can see it
ERROR_TRAP = """<script>window.__errors=[];window.addEventListener('error',function(e){window.__errors.push(String(e.message));
document.documentElement.setAttribute('data-script-errors',String(window.__errors.length));});</script>"""

SCRIPT = """<script>
document.addEventListener('DOMContentLoaded',function(){
  var tip=document.getElementById('tip');
  document.querySelectorAll('[data-tip]').forEach(function(m){
    m.addEventListener('mousemove',function(ev){tip.textContent=m.getAttribute('data-tip');tip.style.display='block';
      tip.style.left=(ev.clientX+12)+'px';tip.style.top=(ev.clientY+12)+'px';});
    m.addEventListener('mouseleave',function(){tip.style.display='none';});
  });
  document.querySelectorAll('table.sortable th').forEach(function(th,col){
    th.addEventListener('click',function(){
      var tbody=th.closest('table').tBodies[0],rows=Array.prototype.slice.call(tbody.rows),asc=th.dataset.asc!=='1';
      rows.sort(function(a,b){var x=a.cells[col].dataset.v||a.cells[col].textContent,y=b.cells[col].dataset.v||b.cells[col].textContent;
        var nx=parseFloat(x),ny=parseFloat(y);var c=(!isNaN(nx)&&!isNaN(ny))?nx-ny:x.localeCompare(y);return asc?c:-c;});
      rows.forEach(function(r){tbody.appendChild(r);});th.dataset.asc=asc?'1':'0';
    });
  });
  // self-check: a plot counts as drawn when each of its marks has a laid-out, non-empty box
  document.querySelectorAll('svg.plot').forEach(function(s){
    var marks=s.querySelectorAll('.mark'),drawn=0;
    marks.forEach(function(m){var b=m.getBBox();if(b.width>0||b.height>0){drawn++;}});
    s.setAttribute('data-marks',String(marks.length));s.setAttribute('data-drawn',String(drawn));
  });
  document.documentElement.setAttribute('data-ready','true');
});
</script>"""


def page(title: str, parts: list[str]) -> str:
    """The HTML page every report is written into: the styles, the error trap, the tooltip and sorting script."""
    head = f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{escape(title)}</title>{ERROR_TRAP}<style>{CSS}</style></head><body>"
    return head + "\n".join(parts) + "<div id='tip'></div>" + SCRIPT + "</body></html>\n"


def _first_batch(t: dict) -> str:
    return str((t.get("profile") or {}).get("batch_sizes", [1])[0])


def _accuracy_key(points_src: list[dict]) -> str:
    return "top1" if all("top1" in m for m in points_src) else "cosine"


def pareto_points(runs: list[tuple[str, dict]], baseline: dict | None) -> tuple[list[dict], str]:
    sources = [t.get("metrics", {}) for _, m in runs for t in m.get("targets", {}).values() if t.get("metrics")]
    acc = _accuracy_key(sources + ([t["metrics"] for t in baseline["targets"].values()] if baseline else []))
    points: list[dict] = []
    fp32_seen = set()
    for label, m in runs:
        passes = "+".join(p["type"] for p in m.get("recipe", {}).get("passes", [])) or "no pass"
        for name, t in m.get("targets", {}).items():
            met, ref, b = t.get("metrics") or {}, t.get("reference_metrics") or {}, _first_batch(t)
            lat = f"latency_p50_ms@{b}"
            if lat in met and acc in met:
                points.append({"x": met[lat], "y": met[acc], "size": met.get("artifact_mb"), "group": name, "label": f"{label} · {passes}", "short": passes})
            if lat in ref and acc in ref and name not in fp32_seen:
                fp32_seen.add(name)
                points.append(
                    {"x": ref[lat], "y": ref[acc], "size": (t.get("size") or {}).get("fp32_mb"), "group": name, "label": f"{label} · FP32", "short": "FP32"}
                )
    for name, t in (baseline or {}).get("targets", {}).items():
        met, b = t["metrics"], str(t["profile"]["batch_sizes"][0])
        if f"latency_p50_ms@{b}" in met and acc in met:
            points.append(
                {
                    "x": met[f"latency_p50_ms@{b}"],
                    "y": met[acc],
                    "size": met.get("artifact_mb"),
                    "group": name,
                    "label": "baseline",
                    "short": "baseline",
                    "hollow": True,
                }
            )
    return points, acc


def latency_plots(manifest: dict, gate: dict | None) -> list[str]:
    out = []
    for name, t in manifest.get("targets", {}).items():
        per_batch = (gate or {}).get("latency_samples", {}).get(name) or {}
        for b in (t.get("profile") or {}).get("batch_sizes", []):
            b = str(b)
            if b in per_batch:
                s = per_batch[b]
                series = [("baseline", s["baseline"]), ("now", s["now"])]
                sub = f"baseline vs now, {s['how']}"
            else:
                lat = t.get("latency") or {}
                series = [(k, (lat.get(k, {}).get(b) or {}).get("times_ms") or []) for k in ("fp32", "compressed")]
                sub = "FP32 vs compressed, timed interleaved"
            if any(len(v) for _, v in series):
                out.append(svg.box_strip(f"latency-{name}-{b}", f"{name}, batch {b}: {sub}", series, "latency, ms"))
    return out
