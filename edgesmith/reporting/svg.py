"""Small SVG plots, drawn here so the HTML report needs no plotting library and no network.

Every data mark carries class ``mark`` (the report's self-check counts drawn marks in the browser)
and a ``data-tip`` text shown on hover.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

import numpy as np

W, H = 640, 360
PAD = {"l": 64, "r": 16, "t": 28, "b": 48}
PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2"]


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if not math.isfinite(lo) or not math.isfinite(hi):
        return []
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    raw = (hi - lo) / max(n, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.ceil(lo / step) * step
    return [round(start + i * step, 12) for i in range(int((hi - start) / step + 1e-9) + 1)]


def _fmt(v: float) -> str:
    return f"{v:.4g}"


class Frame:
    """Axes with linear or log scales, mapping data to pixels."""

    def __init__(self, xlo: float, xhi: float, ylo: float, yhi: float, xlog: bool = False):
        if xlog:
            xlo, xhi = math.log10(max(xlo, 1e-12)), math.log10(max(xhi, 1e-12))
        pad_x = (xhi - xlo) * 0.08 or 0.5
        pad_y = (yhi - ylo) * 0.12 or max(abs(yhi) * 0.01, 0.5)
        self.xlo, self.xhi, self.ylo, self.yhi, self.xlog = xlo - pad_x, xhi + pad_x, ylo - pad_y, yhi + pad_y, xlog

    def x(self, v: float) -> float:
        v = math.log10(max(v, 1e-12)) if self.xlog else v
        return PAD["l"] + (v - self.xlo) / (self.xhi - self.xlo) * (W - PAD["l"] - PAD["r"])

    def y(self, v: float) -> float:
        return H - PAD["b"] - (v - self.ylo) / (self.yhi - self.ylo) * (H - PAD["t"] - PAD["b"])

    def axes(self, xlabel: str, ylabel: str, xticks: bool = True) -> list[str]:
        out = [f'<rect x="{PAD["l"]}" y="{PAD["t"]}" width="{W - PAD["l"] - PAD["r"]}" height="{H - PAD["t"] - PAD["b"]}" class="frame"/>']
        if self.xlog:
            xt = [10**e for e in range(math.floor(self.xlo), math.ceil(self.xhi) + 1)]
            xt = [t * m for t in xt for m in (1, 2, 5) if self.xlo <= math.log10(t * m) <= self.xhi]
        else:
            xt = [t for t in nice_ticks(self.xlo, self.xhi) if self.xlo <= t <= self.xhi]
        xt = xt if xticks else []
        for t in xt:
            px = self.x(t)
            out.append(
                f'<line x1="{px:.1f}" x2="{px:.1f}" y1="{PAD["t"]}" y2="{H - PAD["b"]}" class="grid"/>'
                f'<text x="{px:.1f}" y="{H - PAD["b"] + 16}" class="tick" text-anchor="middle">{_fmt(t)}</text>'
            )
        for t in (t for t in nice_ticks(self.ylo, self.yhi) if self.ylo <= t <= self.yhi):
            py = self.y(t)
            out.append(
                f'<line x1="{PAD["l"]}" x2="{W - PAD["r"]}" y1="{py:.1f}" y2="{py:.1f}" class="grid"/>'
                f'<text x="{PAD["l"] - 6}" y="{py + 4:.1f}" class="tick" text-anchor="end">{_fmt(t)}</text>'
            )
        out.append(f'<text x="{(PAD["l"] + W - PAD["r"]) / 2}" y="{H - 10}" class="label" text-anchor="middle">{escape(xlabel)}</text>')
        out.append(
            f'<text x="14" y="{(PAD["t"] + H - PAD["b"]) / 2}" class="label" text-anchor="middle" '
            f'transform="rotate(-90 14 {(PAD["t"] + H - PAD["b"]) / 2})">{escape(ylabel)}</text>'
        )
        return out


def _svg(plot_id: str, title: str, body: list[str]) -> str:
    return (
        f'<svg class="plot" id="{escape(plot_id)}" viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" '
        f'xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>'
        f'<text x="{PAD["l"]}" y="18" class="ptitle">{escape(title)}</text>' + "".join(body) + "</svg>"
    )


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of points no other point beats on both lower x (latency) and higher y (accuracy)."""
    front = []
    for i, (x, y) in enumerate(points):
        dominated = any((x2 <= x and y2 >= y) and (x2 < x or y2 > y) for j, (x2, y2) in enumerate(points) if j != i)
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: points[i][0])


def scatter_pareto(plot_id: str, title: str, points: list[dict], xlabel: str, ylabel: str) -> str:
    """``points``: dicts with x, y, size (bubble area ~ size), group (colour), label, hollow."""
    xs, ys = [p["x"] for p in points], [p["y"] for p in points]
    xlog = min(xs) > 0 and max(xs) / min(xs) > 20
    f = Frame(min(xs), max(xs), min(ys), max(ys), xlog=xlog)
    body = f.axes(xlabel + (" (log scale)" if xlog else ""), ylabel)
    front = pareto_front([(p["x"], p["y"]) for p in points])
    if len(front) > 1:
        path = " ".join(f"{'M' if k == 0 else 'L'}{f.x(points[i]['x']):.1f},{f.y(points[i]['y']):.1f}" for k, i in enumerate(front))
        body.append(f'<path d="{path}" class="front"/>')
    groups = list(dict.fromkeys(p["group"] for p in points))
    smax = max((p.get("size") or 0) for p in points) or 1.0
    for i, p in enumerate(points):
        colour = PALETTE[groups.index(p["group"]) % len(PALETTE)]
        r = 4 + 10 * math.sqrt((p.get("size") or 0) / smax)
        fill = "none" if p.get("hollow") else colour
        tip = f"{p['label']}: {ylabel} {_fmt(p['y'])}, {xlabel} {_fmt(p['x'])}" + (f", {_fmt(p['size'])} MB" if p.get("size") else "")
        tip += " (Pareto-optimal)" if i in front else ""
        body.append(
            f'<circle class="mark{" onfront" if i in front else ""}" cx="{f.x(p["x"]):.1f}" cy="{f.y(p["y"]):.1f}" r="{r:.1f}" '
            f'fill="{fill}" stroke="{colour}" fill-opacity="0.55" stroke-width="2" data-tip="{escape(tip)}"/>'
        )
        if p.get("short"):
            body.append(f'<text x="{f.x(p["x"]) + r + 3:.1f}" y="{f.y(p["y"]) - r:.1f}" class="tick">{escape(p["short"])}</text>')
    body += _legend([(g, PALETTE[k % len(PALETTE)]) for k, g in enumerate(groups)])
    return _svg(plot_id, title, body)


def _legend(items: list[tuple[str, str]]) -> list[str]:
    out, x = [], PAD["l"] + 8
    for label, colour in items:
        out.append(f'<circle cx="{x}" cy="{PAD["t"] + 12}" r="5" fill="{colour}"/><text x="{x + 9}" y="{PAD["t"] + 16}" class="legend">{escape(label)}</text>')
        x += 18 + 7 * len(label)
    return out


def box_strip(plot_id: str, title: str, series: list[tuple[str, Sequence[float]]], ylabel: str) -> str:
    """Box plot (quartiles, whiskers at the 5th/95th percentile) with every sample as a dot beside it."""

    allv = np.concatenate([np.asarray(v, dtype=float) for _, v in series if len(v)])
    f = Frame(0, len(series), float(allv.min()), float(np.percentile(allv, 99.5)))
    body = f.axes("", ylabel, xticks=False)
    slot = (W - PAD["l"] - PAD["r"]) / max(len(series), 1)
    rng = np.random.default_rng(0)
    for k, (label, values) in enumerate(series):
        v = np.asarray(values, dtype=float)
        if not len(v):
            continue
        colour = PALETTE[k % len(PALETTE)]
        cx = PAD["l"] + slot * (k + 0.5)
        p5, q1, med, q3, p95 = np.percentile(v, [5, 25, 50, 75, 95])
        bw = min(60.0, slot * 0.3)
        tip = f"{label}: median {_fmt(med)} ms, IQR {_fmt(q1)}-{_fmt(q3)}, p95 {_fmt(p95)}, n={len(v)}"
        body.append(f'<line class="mark" x1="{cx - bw / 2:.1f}" x2="{cx - bw / 2:.1f}" y1="{f.y(p5):.1f}" y2="{f.y(p95):.1f}" stroke="{colour}"/>')
        body.append(
            f'<rect class="mark" x="{cx - bw:.1f}" y="{f.y(q3):.1f}" width="{bw:.1f}" height="{max(f.y(q1) - f.y(q3), 1):.1f}" '
            f'fill="{colour}" fill-opacity="0.25" stroke="{colour}" data-tip="{escape(tip)}"/>'
        )
        body.append(f'<line class="mark" x1="{cx - bw:.1f}" x2="{cx:.1f}" y1="{f.y(med):.1f}" y2="{f.y(med):.1f}" stroke="{colour}" stroke-width="3"/>')
        shown = v if len(v) <= 400 else rng.choice(v, 400, replace=False)
        for s in shown:
            y = f.y(min(s, f.yhi))
            body.append(f'<circle class="mark dot" cx="{cx + 6 + rng.uniform(0, bw):.1f}" cy="{y:.1f}" r="1.8" fill="{colour}"/>')
        body.append(f'<text x="{cx:.1f}" y="{H - PAD["b"] + 16}" class="tick" text-anchor="middle">{escape(label)}</text>')
    return _svg(plot_id, title, body)


def hbars(plot_id: str, title: str, items: list[tuple[str, float]], xlabel: str) -> str:
    """Horizontal bars, largest first (e.g. per-layer sensitivity)."""
    items = sorted(items, key=lambda kv: -kv[1])[:30]
    h = max(H, PAD["t"] + PAD["b"] + 16 * len(items))
    hi = max((v for _, v in items), default=1.0) or 1.0
    left = 180
    body = []
    for k, (name, v) in enumerate(items):
        y = PAD["t"] + 8 + 16 * k
        w = max(1.0, (W - left - PAD["r"]) * v / hi)
        body.append(
            f'<text x="{left - 6}" y="{y + 11}" class="tick" text-anchor="end">{escape(name[-28:])}</text>'
            f'<rect class="mark" x="{left}" y="{y}" width="{w:.1f}" height="12" fill="{PALETTE[0]}" '
            f'data-tip="{escape(f"{name}: {_fmt(v)}")}"/>'
        )
    body.append(f'<text x="{(left + W) / 2}" y="{h - 10}" class="label" text-anchor="middle">{escape(xlabel)}</text>')
    return (
        f'<svg class="plot" id="{escape(plot_id)}" viewBox="0 0 {W} {h}" width="{W}" height="{h}" role="img" xmlns="http://www.w3.org/2000/svg">'
        f'<title>{escape(title)}</title><text x="{PAD["l"]}" y="18" class="ptitle">{escape(title)}</text>' + "".join(body) + "</svg>"
    )


def trend(plot_id: str, title: str, points: list[tuple[str, float | None]], ylabel: str) -> str:
    """A metric over successive runs (oldest first): a line through the values, each point labelled."""
    shown = [(k, label, float(v)) for k, (label, v) in enumerate(points) if v is not None and math.isfinite(float(v))]
    if not shown:
        return ""
    ys = [v for _, _, v in shown]
    f = Frame(0, max(len(points) - 1, 1), min(ys), max(ys))
    body = f.axes("accepted baselines, oldest first; last: this run", ylabel, xticks=False)
    path = " ".join(f"{'M' if i == 0 else 'L'}{f.x(k):.1f},{f.y(v):.1f}" for i, (k, _, v) in enumerate(shown))
    body.append(f'<path d="{path}" fill="none" stroke="{PALETTE[0]}" stroke-width="2"/>')
    for k, label, v in shown:
        colour = PALETTE[1] if k == len(points) - 1 else PALETTE[0]
        body.append(f'<circle class="mark" cx="{f.x(k):.1f}" cy="{f.y(v):.1f}" r="4" fill="{colour}" data-tip="{escape(f"{label}: {_fmt(v)}")}"/>')
    return _svg(plot_id, title, body)
