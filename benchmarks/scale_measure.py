"""Measuring for benchmarks/scale.py: peak RSS per stage, growth fits, merging runs, the record.

Growth: time ∝ N^b fitted in log-log; the projection to BRODEN's 63,305 images takes the larger of
that power law and a line a + b·N (fixed costs make b < 1 at small N); peak RSS = c + d·N.
"""

from __future__ import annotations

import json

import numpy as np
from common import ROOT, machine

BRODEN_IMAGES = 63305
FULL_BATCHES = 2 * 2 * 64  # below this N a split's batches (64 images) are not yet full


def vm(field: str) -> float:
    """A /proc/self/status figure (VmRSS, VmHWM) in MiB."""
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"/proc/self/status has no {field}")


def fit(images: list[int], seconds: list[float], peaks: list[float], before=None) -> dict:
    """Growth: time ∝ N^b (log-log least squares). Projection to BRODEN's N: the larger of that
    power law and a line a + b·N (fixed costs make b < 1 at small N). Peak RSS: the largest
    measured peak plus d·(63,305 − N_max), d the slope in N of the stage's own increment
    (peak − RSS before the stage, when ``before`` is given, else the peak). Points with N below
    ``FULL_BATCHES`` are left out when two or more others remain."""
    full = np.asarray(images) >= FULL_BATCHES  # memory grows with the batch until it is full
    if full.sum() >= 2 and not full.all():
        keep = lambda values: None if values is None else list(np.asarray(values)[full])  # noqa: E731
        images, seconds, peaks, before = (keep(v) for v in (images, seconds, peaks, before))
    n, t = np.asarray(images, float), np.maximum(np.asarray(seconds, float), 1e-3)
    if len(n) < 2:
        return {}
    b, a = np.polyfit(np.log(n), np.log(t), 1)
    slope, intercept = np.polyfit(n, t, 1)
    own = np.asarray(peaks, float) - (0.0 if before is None else np.asarray(before, float))
    d = np.polyfit(n, own, 1)[0]
    projected = max(np.exp(a) * BRODEN_IMAGES**b, intercept + slope * BRODEN_IMAGES)
    return {
        "growth": round(float(b), 2),
        "projected_s": round(float(projected), 1),
        "rss_mib_per_1k_images": round(float(d) * 1000, 1),
        "projected_peak_rss_gib": round((max(peaks) + d * (BRODEN_IMAGES - n.max())) / 1024, 2),
    }


def merged(paths: list[str]) -> list[dict]:
    """Records of separate runs (their printed JSON lines) joined per shape and refitted: runs of
    one shape at different N can then go side by side on a machine with idle cores."""
    shapes: dict[tuple, dict] = {}
    for path in paths:
        for line in open(path):
            if not line.startswith('{"benchmark": "scale"'):
                continue
            record = json.loads(line)
            key = (record["filters"], record["map_size"])
            base = shapes.setdefault(key, {**record, "images": [], "points": []})
            for i, n in enumerate(record["images"]):
                stages = record["stages"].items()
                fields = ("s", "peak_rss_mib", "rss_before_mib")
                base["points"].append(
                    (n, {k: {f: v[f][i] for f in fields if f in v} for k, v in stages})
                )
    out = []
    for record in shapes.values():
        points = sorted(record.pop("points"), key=lambda point: point[0])
        record["images"] = [n for n, _ in points]
        record["stages"] = {}
        for name in points[0][1]:
            stage = {f: [p[name][f] for _, p in points if f in p[name]] for f in points[0][1][name]}
            before = stage.get("rss_before_mib")
            if before is not None and len(before) != len(points):
                stage.pop("rss_before_mib")
                before = None
            fitted = fit(record["images"], stage["s"], stage["peak_rss_mib"], before)
            record["stages"][name] = {**stage, **fitted}
        out.append(record)
    return out


def record_line(record: dict) -> str:
    """Append `record` to benchmarks/results/<device>.jsonl (as benchmarks/study.py)."""
    name = f"cpu-{machine().split(',')[0]}"
    path = ROOT / "benchmarks" / "results" / f"{name.replace(' ', '_').replace('/', '_')}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        handle.write(json.dumps({"device_name": name, **record}) + "\n")
    return str(path.relative_to(ROOT))


def print_table(record: dict) -> None:
    """One line per stage: seconds per N, peak RSS, growth and the projection."""
    for name, stage in record["stages"].items():
        line = f"{name:20s} K={record['filters']:4d} {record['map_size']}²: "
        line += " ".join(f"{s:7.1f}s" for s in stage["s"])
        line += f"  peak {max(stage['peak_rss_mib']):7.0f} MiB"
        if "growth" in stage:
            line += f"  N^{stage['growth']:.2f} -> {stage['projected_s']:.0f} s, "
            line += f"{stage['projected_peak_rss_gib']:.2f} GiB at {BRODEN_IMAGES}"
        print(line)
