"""`python train.py` with the shipped defaults (synthetic probe set + synthnet, conv5, seg), end to end."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_default_run_end_to_end(tmp_path, default_root):
    env = {key: value for key, value in os.environ.items() if not key.startswith("NET2VEC_")}
    env["WANDB_MODE"] = "offline"
    run = tmp_path / "run"
    done = subprocess.run(
        [
            sys.executable,
            "train.py",
            f"paths.root_dir={default_root}",
            f"hydra.run.dir={run}",
            "trainer.enable_progress_bar=false",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "concepts with all filters >= single filter" in done.stdout  # the closing table
    assert "(probe: linear/paper/sigmoid)" in done.stdout  # names the probe variant
    with open(run / "results.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) >= 40 and {r["category"] for r in rows} == {
        "color",
        "object",
        "part",
        "material",
    }
    single = np.array([float(r["single_iou_val"]) for r in rows])
    learned = np.array([float(r["iou_val"]) for r in rows])
    assert np.all((single >= 0) & (single <= 1)) and np.all((learned >= 0) & (learned <= 1))
    assert single.mean() > 0.01 and learned.mean() > 0.01  # synthnet's filters carry concepts
    # the paper's effect with the paper's protocol. The count moves between machines (80 % here,
    # 84 % elsewhere: 12 concepts lie within 0.005 IoU of their single filter) and seeds (78-91 %
    # over seeds 0-5, docs/reliability.md); the threshold sits 8 points below the lowest. Per
    # category the learned mean is 1.8-5.3x the single filter's (parts 0.121 vs 0.066).
    assert np.mean(learned >= single) >= 0.7
    category = np.array([r["category"] for r in rows])
    for name in ("color", "object", "part", "material"):
        chosen = category == name
        assert learned[chosen].mean() > single[chosen].mean(), name
    with h5py.File(run / "embeddings.h5") as handle:
        assert (
            handle["weights"].shape == (len(rows), 128) and np.isfinite(handle["weights"][:]).all()
        )
        assert handle.attrs["network"] == "synthnet" and handle.attrs["layer"] == "conv5"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["variant"] == "linear/paper/sigmoid"
    assert summary["percent_all_ge_single"] == pytest.approx(100 * np.mean(learned >= single))
    assert set(summary["timings_s"]) >= {
        "concept_store",
        "activation_store",
        "single_filter",
        "probe_all_filters",
    }
    assert any((run / "wandb").glob("offline-run-*"))  # logged to W&B offline
