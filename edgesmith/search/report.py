"""The end of a search: the front from the study, the best trial's full run, search.md/.json/.html."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgesmith import pipeline
from edgesmith.evaluate.judge import pick_fastest
from edgesmith.outputs import atomic_write_text
from edgesmith.recipe import parse_recipe
from edgesmith.report import Markup, md, md_code
from edgesmith.reporting import svg
from edgesmith.reporting.document import Report, Section, Table, trial_checks
from edgesmith.reporting.document import write as write_report
from edgesmith.search.result import SearchResult, TrialRecord


def records(study: Any) -> list[TrialRecord]:
    from optuna.trial import TrialState

    out = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL)):
        a = t.user_attrs
        r = TrialRecord(
            t.number,
            dict(t.params),
            a.get("label", ""),
            "complete" if t.state == TrialState.COMPLETE else "failed",
            error=a.get("error", ""),
            node=a.get("node", ""),
            timing_node=a.get("timing_node", ""),
            seconds=a.get("seconds") or 0.0,
            cache=a.get("cache") or {},
        )
        if t.state == TrialState.COMPLETE and t.values:
            r.accuracy, r.latency_ms, r.size_mb = t.values
            r.speedup, r.low, r.high, r.busy = a.get("speedup"), a.get("low"), a.get("high"), a.get("busy", False)
            r.feasible, r.shortfall, r.gaps = bool(a.get("feasible")), float(a.get("shortfall") or 0.0), list(a.get("gaps") or [])
        out.append(r)
    return sorted(out, key=lambda r: r.number)


def _objectives(t: TrialRecord) -> tuple[float, float, float]:
    """(accuracy, latency, size) of a completed trial; a missing value counts as the worst."""
    inf = float("inf")
    return (-inf if t.accuracy is None else t.accuracy, inf if t.latency_ms is None else t.latency_ms, inf if t.size_mb is None else t.size_mb)


def dominates(a: TrialRecord, b: TrialRecord) -> bool:
    (acc_a, lat_a, mb_a), (acc_b, lat_b, mb_b) = _objectives(a), _objectives(b)
    ge = acc_a >= acc_b and lat_a <= lat_b and mb_a <= mb_b
    gt = acc_a > acc_b or lat_a < lat_b or mb_a < mb_b
    return ge and gt


def pareto(trials: list[TrialRecord]) -> list[TrialRecord]:
    """Trials within every budget that no other such trial beats on accuracy, latency and size at once."""
    ok = [t for t in trials if t.state == "complete" and t.feasible and t.accuracy == t.accuracy]
    front = [t for t in ok if not any(dominates(o, t) for o in ok if o is not t)]
    return sorted(front, key=lambda t: _objectives(t)[1])


def finish(study: Any, space: Any, base: dict, base_dir: Path, out: Path, profile: Any, ref: Any, info: dict, s: Any, rep: Any, cache: Any) -> SearchResult:
    trials = records(study)
    front = pareto(trials)
    for t in front:
        t.on_front = True
    # the judge's rule (evaluate.judge.pick_fastest), as optimize applies it: the fastest on the front, unless the
    # measurement cannot tell its speed from others' (intervals overlap): then the more accurate of those
    best = pick_fastest(
        front, lambda t: t.speedup or 0.0, lambda t: (t.low, t.high) if t.low is not None else None, lambda t: (_objectives(t)[0], -_objectives(t)[2])
    )
    closest = [] if front else sorted([t for t in trials if t.state == "complete"], key=lambda t: t.shortfall)[:3]
    verdict = "interrupted" if info.get("interrupted") else ("pass" if best else "fail")
    reference = dict(ref.metrics, fp32_p50_ms=study.user_attrs.get("fp32_p50_ms"))
    res = SearchResult(out, trials, front, best, closest, ref.accuracy_key, reference, info, verdict)
    if best is not None and s.run_best and not info.get("interrupted"):
        res.best_run = _run_best(best, space, base, base_dir, out, cache, s, rep)
    write(res, profile)
    return res


def _run_best(best: TrialRecord, space: Any, base: dict, base_dir: Path, out: Path, cache: Any, s: Any, rep: Any) -> Any:
    """The best trial run again in full (latency judged against the budgets, the manifest, the report), in
    ``best/``: its passes come from the cache. ``best.yaml`` reproduces it with `edgesmith run`."""

    recipe = parse_recipe({**base, "passes": space.concrete(best.params), "output_dir": "best"})
    with rep.step(f"[search] full run of the best trial #{best.number} ({best.label})"):
        result = pipeline.run(recipe, base_dir, out_dir=out / "best", cache=cache if cache.usable else None, force=True, trust_checkpoint=s.trust_checkpoint)
    atomic_write_text(out / "best.yaml", recipe.relocated(base_dir, out).to_yaml())
    return result


def write(res: SearchResult, profile: Any) -> None:

    write_report(search_report(res, profile), res.out_dir, "search")


def _row(t: TrialRecord) -> list[Any]:
    if t.state != "complete":
        return [t.number, t.label, "—", "—", "—", "—", f"failed: {t.error}"]
    sp = f"{t.speedup:.2f}x ({t.low:.2f}-{t.high:.2f})" if t.low is not None else f"{t.speedup:.2f}x"
    status = (Markup("**front**") if t.on_front else "within budget") if t.feasible else "outside: " + "; ".join(t.gaps)
    return [t.number, t.label, f"{t.accuracy:.4g}", f"{t.latency_ms:.4g}", f"{sp}{' (busy)' if t.busy else ''}", f"{t.size_mb:.4g}", status]


def _table(trials: list[TrialRecord], key: str) -> Table:
    return Table(
        ["trial", "choices", md(key), "p50 ms", "speed-up (interval)", "MB", "result"],
        [_row(t) for t in trials],
        ["pass" if t.state == "complete" and t.feasible else "fail" for t in trials],
    )


def _figure(res: SearchResult) -> list[str]:
    """Accuracy vs latency, bubble area the artifact's size; the front's trials filled and joined, trials outside a budget hollow."""

    points = [
        {
            "x": t.latency_ms,
            "y": t.accuracy,
            "size": t.size_mb,
            "label": f"#{t.number} {t.label}",
            "group": "front" if t.on_front else "within budget" if t.feasible else "outside a budget",
            "hollow": not t.feasible,
            "short": f"#{t.number}" if t.on_front else "",
        }
        for t in res.trials
        if t.state == "complete" and t.accuracy is not None
    ]
    key = res.accuracy_key
    return [svg.scatter_pareto("search-front", f"{key} vs p50 latency", points, "p50 latency, ms", key)] if points else []


def search_report(res: SearchResult, profile: Any) -> Report:
    i, key = res.info, res.accuracy_key
    c = i["cache"]
    facts = [
        f"- target `{profile.name}`; budgets: " + (", ".join(f"{g.metric} {g.goal} {g.value:g}" for g in profile.budgets) or "none"),
        f"- space: {md('; '.join(i['space']))}" + (f" ({i['grid_size']} combinations)" if i.get("grid_size") else ""),
        f"- sampler {i['sampler']}, study `{i['study']}` in {md(i['storage'])}; {len(res.trials)} trial(s) in the study, "
        f"{i['new_trials']} run now ({i['resumed_trials']} resumed) in {i['seconds']:.0f} s: {i['trials_per_hour']:.0f} trials/hour",
        f"- executor: {md(i['executor'])}; builds {i['build_seconds']:.0f} s, timing {i['timing_seconds']:.0f} s (timed alone, after each wave's builds)",
        f"- cache {md_code(c['folder'])}: {c['hits']} hit(s), {c['misses']} miss(es) ({100 * c['hit_rate']:.0f}%)",
        "- float reference: " + ", ".join(f"{k} {v:.4g}" for k, v in res.reference.items() if isinstance(v, (int, float))),
        f"- latency: batch {i['batch']}, p50 ms = FP32's p50 in the first race / the trial's speed-up over FP32 in its own race "
        "(interleaved, 95% bootstrap interval)",
        *(f"- note: {md(n)}" for n in i.get("notes", [])),
    ]
    summary = []
    if res.best:
        b = res.best
        summary.append(
            f"**Best**: trial #{b.number} ({md(b.label)}): {md(key)} {b.accuracy:.4g}, {b.speedup:.2f}x FP32, {b.size_mb:.4g} MB; "
            "full run in `best/`, recipe `best.yaml`."
        )
    elif res.closest:
        summary.append("**No trial met every budget.** Closest: " + "; ".join(f"#{t.number} ({md(t.label)}): {md('; '.join(t.gaps))}" for t in res.closest))
    return Report(
        f"edgesmith search: {'best #' + str(res.best.number) if res.best else 'no trial within budget'}",
        res.verdict,
        facts,
        summary,
        [
            Section("Pareto front (within budget)", table=_table(res.front, key), figures=_figure(res)),
            Section("Every trial", table=_table(res.trials, key)),
        ],
        trial_checks(res.trials, f"edgesmith.search.{profile.name}"),
        res.as_dict(),
    )
