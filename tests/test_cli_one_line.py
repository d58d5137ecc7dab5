"""End to end through the entry points: a refused run leaves a live run's folder as it was, and
bad settings or a missing run folder end with one `error:` line."""

from __future__ import annotations

import subprocess
import sys

import pytest
from omegaconf import OmegaConf
from one_line import error_line, script, script_error

TINY_RUN = ["network=planted", "data.images=40", "data.size=64", "task.epochs=1", "logger=none",
            "trainer.enable_progress_bar=false", "stats.resamples=0", "stats.null_draws=0"]  # fmt: skip


def snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_a_run_refused_from_a_live_runs_folder_leaves_it_untouched(tmp_path):
    run = tmp_path / "run"
    done = script("train", *TINY_RUN, f"paths.root_dir={tmp_path}", f"hydra.run.dir={run}")
    assert done.returncode == 0, done.stderr[-2000:]
    assert OmegaConf.load(run / ".hydra" / "config.yaml").network.name == "planted"
    assert "data.images=40" in OmegaConf.load(run / ".hydra" / "overrides.yaml")
    assert OmegaConf.load(run / ".hydra" / "hydra.yaml").hydra.run.dir == str(run)
    assert (run / "train.log").read_text().count("stage dataset") == 1
    before = snapshot(run)
    holder = subprocess.Popen(  # the live run: it holds the folder's lock
        [sys.executable, "-c", "import fcntl, sys, time; h = open(sys.argv[1], 'a+'); "
         "fcntl.flock(h, fcntl.LOCK_EX); print('held', flush=True); time.sleep(120)",
         str(run / ".run.lock")],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        again = script("train", *TINY_RUN, "seed=3", f"paths.root_dir={tmp_path}",
                       f"hydra.run.dir={run}")  # fmt: skip
    finally:
        holder.kill()
        holder.wait()
    assert "in use by another running train.py" in error_line(again.stderr, again.returncode)
    assert snapshot(run) == before  # .hydra record, train.log, results: as the live run left them


@pytest.mark.slow
def test_bad_values_and_missing_runs_end_with_one_line(tmp_path):
    assert "task.batch_size=0" in script_error("train", "task.batch_size=0", cwd=tmp_path)
    assert "stats.level=1.5" in script_error("train", "stats.level=1.5", cwd=tmp_path)
    missing = tmp_path / "missing"
    line = script_error("evaluate", f"runs=[{missing}]", f"hydra.run.dir={tmp_path / 'report'}")
    assert f"{missing}: no such run directory" in line
