"""Run folders: unique by default, never shared by two live runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import CONF
from omegaconf import OmegaConf

from net2vec.run.folders import RunDirError, claim_run_dir

ROOT = Path(__file__).resolve().parents[1]


def test_the_default_run_dirs_name_sub_seconds_and_the_seed():
    hydra = OmegaConf.to_container(OmegaConf.load(CONF / "hydra" / "default.yaml"))
    assert "%f}" in hydra["run"]["dir"] and hydra["run"]["dir"].endswith("-s${seed}")
    assert "%f}" in hydra["sweep"]["dir"] and "${hydra.job.num}" in hydra["sweep"]["subdir"]
    for name in ("evaluate", "experiments"):
        own = OmegaConf.to_container(OmegaConf.load(CONF / f"{name}.yaml"))["hydra"]
        assert "%f}" in own["run"]["dir"] and "%f}" in own["sweep"]["dir"]


def test_a_run_dir_held_by_a_live_process_is_refused(tmp_path):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, sys, time; h = open(sys.argv[1], 'a+'); fcntl.flock(h, fcntl.LOCK_EX); "
            "print('held', flush=True); time.sleep(60)",
            str(tmp_path / ".run.lock"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunDirError, match="in use by another running") as error:
            claim_run_dir(tmp_path)
        assert "\n" not in str(error.value)
    finally:
        holder.kill()
        holder.wait()
    claim_run_dir(tmp_path)  # free once that process is gone
    claim_run_dir(tmp_path)  # and again from the same process


@pytest.mark.slow
def test_two_runs_started_together_get_two_folders(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("NET2VEC_")}
    args = [
        sys.executable,
        str(ROOT / "train.py"),
        "network=planted",
        "data.images=40",
        "data.size=64",
        "task.epochs=1",
        "logger=none",
        "trainer.enable_progress_bar=false",
    ]
    procs = [
        subprocess.Popen(
            args,
            cwd=tmp_path,
            env={**env, "WANDB_MODE": "offline"},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(2)
    ]  # the same seed: only the start time tells them apart
    outputs = [proc.communicate(timeout=900)[0] for proc in procs]
    for proc, out in zip(procs, outputs):
        assert proc.returncode == 0, out[-3000:]
    runs = sorted((tmp_path / "outputs").glob("*/*-planted-conv5-seg-s0"))
    assert len(runs) == 2, runs
    for run in runs:
        assert (run / "results.csv").is_file()
        assert (run / "train.log").read_text().count("stage dataset") == 1  # not interleaved
