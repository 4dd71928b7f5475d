"""Do identical runs give one verdict? ``edgesmith demo`` N times (default 20) on this machine.

    python benchmarks/verdict_stability.py [N]

Each run is a fresh process with the same recipe (the digits CNN -> static INT8 on x86-avx512-vnni-ort).
Latency budgets are judged on the 95% interval of the interleaved measurement (pass when surely within,
fail when surely outside, inconclusive otherwise, re-measured up to twice when unsure); this prints the
exit code, overall verdict and the speed-up budget's verdict and interval of every run, then a tally.
"""

from __future__ import annotations

import collections
import json
import subprocess
import sys
import tempfile
from pathlib import Path


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    exe = Path(sys.executable).with_name("edgesmith")
    tally: collections.Counter = collections.Counter()
    print("| run | exit | verdict | speed-up (batch 1) | 95% interval | its verdict | machine |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(n):
            out = Path(tmp) / f"run{i}"
            proc = subprocess.run([str(exe), "demo", "--out", str(out)], capture_output=True, text=True)
            m = json.loads((out / "manifest.json").read_text()) if (out / "manifest.json").is_file() else {}
            t = next(iter((m.get("targets") or {}).values()), {})
            v = next((v for v in t.get("verdicts", []) if v["metric"] == "speedup_vs_fp32"), {})
            metrics = t.get("metrics", {})
            low, high = metrics.get("speedup_vs_fp32_low@1"), metrics.get("speedup_vs_fp32_high@1")
            interval = f"{low:.2f}-{high:.2f}" if low is not None else "—"
            value = f"{metrics['speedup_vs_fp32@1']:.2f}x" if "speedup_vs_fp32@1" in metrics else "—"
            machine = (((t.get("latency") or {}).get("compressed") or {}).get("1") or {}).get("machine") or {}
            busy = "busy" if machine.get("busy") else f"quiet ({machine.get('others_cores') or 0:.2f} other cores)"
            print(f"| {i + 1} | {proc.returncode} | {m.get('verdict', '?')} | {value} | {interval} | {v.get('status', '?')} | {busy} |", flush=True)
            tally[(proc.returncode, m.get("verdict"), v.get("status"))] += 1
    print()
    for (code, verdict, status), count in tally.most_common():
        print(f"- {count}/{n} runs: exit {code}, verdict {verdict}, speed-up budget {status}")


if __name__ == "__main__":
    main()
