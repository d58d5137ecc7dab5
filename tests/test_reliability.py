"""Reliability: interrupted stages resume to the same results, corrupt stores are rebuilt, runs
are reproducible, and concurrent processes build a shared store once.

Kills are real: a subprocess runs the pipeline with one stage made to stop at a known point
midway (it writes a marker file and sleeps), and is then killed with SIGKILL; the rerun must give
the results.csv of an uninterrupted run. Data: network=planted (or synthnet with random weights
for the image-extraction path), 80 synthetic images of 64 px, 2 epochs, batches of 16 images so
that an epoch has several shuffled steps.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import compose_config

from net2vec.data.concept_store import ConceptStore, prepare_concept_store, store_path
from net2vec.features.store import ActivationStore
from net2vec.run.pipeline import ensure_dataset, prepare_activation_store, train

TESTS = Path(__file__).resolve().parent
PYTHON = sys.executable
BASE = ["network=planted", "task.epochs=2", "task.batch_size=16", "logger=none"]
SYNTHNET = [
    "network=synthnet",
    "network.weights=null",
    "network.input_size=64",
    "features.batch_size=16",
    "task.epochs=2",
    "task.batch_size=16",
    "logger=none",
]

# The subprocess: compose the config like the tests do, optionally arm a stop point, then run
# `train(cfg)` ("train") or only the store builders ("stores", printing a JSON line).
DRIVER = r"""
import json, os, sys, time
from pathlib import Path
spec = json.loads(sys.argv[1])
sys.path.insert(0, spec["tests"])
from conftest import compose_config

def stop_here():
    Path(spec["marker"]).write_text(str(os.getpid()))
    time.sleep(600)

def after(module, name, calls, wrap_method=False):
    original, count = getattr(module, name), [0]
    def wrapper(*args, **kwargs):
        count[0] += 1
        if count[0] == calls:
            stop_here()
        return original(*args, **kwargs)
    setattr(module, name, wrapper)

def announce(module, name, what):
    original = getattr(module, name)
    def wrapper(*args, **kwargs):
        print("BUILD", what, flush=True)
        time.sleep(2)
        return original(*args, **kwargs)
    setattr(module, name, wrapper)

stop = spec.get("stop")
if stop == "concept_store":
    import net2vec.data.concept_store.build as m; after(m, "_decode_row", 40)
elif stop == "planted":
    import net2vec.features.planted as m
    m.build_planted.__defaults__ = (16,)            # blocks of 16 images, stop in the 3rd
    after(m, "planted_block", 3)
elif stop == "extraction":
    import net2vec.features.extract as m; after(m.StoreBuilder, "add", 3)
elif stop == "probe":
    from net2vec.probes.segmentation import SegmentationProbe
    step = SegmentationProbe.training_step
    def training_step(self, batch, batch_idx):
        if self.current_epoch >= 1:
            stop_here()
        return step(self, batch, batch_idx)
    SegmentationProbe.training_step = training_step
cfg = compose_config(Path(spec["workdir"]), *spec["overrides"], cache=Path(spec["cache"]))
if spec["mode"] == "train":
    from net2vec.run.pipeline import train
    train(cfg)
else:
    import net2vec.data.concept_store.build as cs, net2vec.data.synthetic.write as syn, net2vec.features.planted as pl
    announce(cs, "build_concept_store", "concepts"); announce(pl, "build_planted", "planted")
    announce(syn, "build_catalogue", "dataset")
    barrier = Path(spec["barrier"]); (barrier / f"ready-{os.getpid()}").touch()
    while len(list(barrier.glob("ready-*"))) < spec["parties"]:
        time.sleep(0.05)
    from net2vec.run.pipeline import ensure_dataset
    from net2vec.run.pipeline import prepare_activation_store
    root = ensure_dataset(cfg.data)
    concepts = cs.prepare_concept_store(root, cfg.paths.cache_dir, progress=False)
    acts = prepare_activation_store(cfg, concepts)
    print(json.dumps({"concepts": str(concepts.path), "activations": str(acts.path),
                      "pairs": int(len(concepts.pair_image)), "thresholds": acts.thresholds.tolist()}))
"""


def driver_spec(workdir: Path, cache: Path, data: Path, overrides: list[str], **extra) -> dict:
    return {
        "tests": str(TESTS),
        "workdir": str(workdir),
        "cache": str(cache),
        "overrides": [*overrides, f"paths.data_dir={data}"],
        "mode": "train",
        **extra,
    }


def environment() -> dict:
    return {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "PYTHONUNBUFFERED": "1"}


def run_and_kill(spec: dict, tmp_path: Path, timeout: float = 240) -> None:
    """Start the driver, wait until it reaches its stop point, SIGKILL it."""
    marker = tmp_path / f"stopped-{spec['stop']}"
    log = tmp_path / f"driver-{spec['stop']}.log"
    spec = {**spec, "marker": str(marker)}
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [PYTHON, "-c", DRIVER, json.dumps(spec)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=environment(),
            cwd=TESTS.parent,
        )
    deadline = time.monotonic() + timeout
    while not marker.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(
                f"driver never reached its stop point (rc={proc.poll()}):\n{log.read_text()[-3000:]}"
            )
        time.sleep(0.1)
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL


def results_of(workdir: Path) -> str:
    return (workdir / "run" / "results.csv").read_text()


def run_in_process(workdir: Path, cache: Path, data: Path, overrides: list[str]) -> str:
    train(compose_config(workdir, *overrides, f"paths.data_dir={data}", cache=cache))
    return results_of(workdir)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="module")
def reference_results(tmp_path_factory, data_dir) -> dict:
    """Uninterrupted results.csv per configuration (computed lazily, once)."""
    cache: dict[str, str] = {}

    def get(overrides: list[str]) -> str:
        name = json.dumps(overrides)
        if name not in cache:
            work = tmp_path_factory.mktemp("reference")
            cache[name] = run_in_process(work, work / "cache", data_dir, overrides)
        return cache[name]

    return get


# --- interrupted stages -------------------------------------------------------------------


def leftovers(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.tmp-*")) if folder.is_dir() else []


@pytest.mark.slow
@pytest.mark.parametrize(
    "stop, overrides, folder",
    [
        ("concept_store", BASE, "concepts"),
        ("planted", BASE, "activations"),
        ("extraction", SYNTHNET, "activations"),
    ],
)
def test_a_store_build_killed_midway_is_rebuilt_and_gives_the_same_results(
    stop, overrides, folder, tmp_path, data_dir, reference_results
):
    work, cache = tmp_path / "work", tmp_path / "cache"
    run_and_kill(driver_spec(work, cache, data_dir, overrides, stop=stop), tmp_path)
    assert leftovers(cache / folder), f"the killed build left no temporary file in {cache / folder}"
    assert not list((cache / folder).glob("*.h5")), "a half-built store was put in place"
    assert run_in_process(work, cache, data_dir, overrides) == reference_results(overrides)


@pytest.mark.slow
def test_probe_training_killed_midway_resumes_to_the_same_results(
    tmp_path, data_dir, reference_results, caplog
):
    work, cache = tmp_path / "work", tmp_path / "cache"
    run_and_kill(driver_spec(work, cache, data_dir, BASE, stop="probe"), tmp_path)
    checkpoints = list((work / "run" / "checkpoints").glob("all_filters-*/last.ckpt"))
    assert len(checkpoints) == 1, "no epoch-0 checkpoint to resume from"
    assert not list((cache / "probes").glob("*.safetensors")), "an unfinished probe was cached"
    with caplog.at_level(logging.INFO, logger="net2vec.probes.fitting"):
        rerun = run_in_process(work, cache, data_dir, BASE)
    assert any("resuming from" in record.getMessage() for record in caplog.records)
    assert rerun == reference_results(BASE)


# --- corrupt stores -------------------------------------------------------------------------


def truncate(path: Path) -> None:
    with open(path, "r+b") as handle:
        handle.truncate(path.stat().st_size // 2)


def drop_complete_flag(path: Path) -> None:
    with h5py.File(path, "r+") as handle:
        del handle.attrs["net2vec_complete"]


def store_arrays(concepts: ConceptStore, acts: ActivationStore) -> dict:
    rows = np.arange(acts.num_images)
    return {
        "pairs": concepts.pair_concept.copy(),
        "masks": concepts.masks(np.arange(len(concepts.pair_image))),
        "presence": concepts.presence.copy(),
        "acts": acts.activations(rows),
        "thresholds": acts.thresholds,
    }


@pytest.fixture(scope="module")
def built_stores(tmp_path_factory, data_dir):
    """A config, its concept + planted stores and their arrays."""
    work = tmp_path_factory.mktemp("corrupt")
    cfg = compose_config(work, *BASE, f"paths.data_dir={data_dir}", cache=work / "cache")
    root = ensure_dataset(cfg.data)
    concepts = prepare_concept_store(root, cfg.paths.cache_dir, progress=False)
    acts = prepare_activation_store(cfg, concepts)
    arrays = store_arrays(concepts, acts)
    concepts.close()
    acts.close()
    return cfg, root, arrays


@pytest.mark.parametrize(
    "damage", [truncate, drop_complete_flag], ids=["truncated", "no-complete-flag"]
)
@pytest.mark.parametrize("which", ["concepts", "activations"])
def test_a_corrupt_store_is_detected_and_rebuilt(which, damage, built_stores):
    cfg, root, expected = built_stores
    concept_path = store_path(root, cfg.paths.cache_dir)
    path = (
        concept_path
        if which == "concepts"
        else prepare_activation_store(cfg, ConceptStore(concept_path)).path
    )
    damage(path)
    with pytest.raises((OSError, ValueError)):  # the damaged file itself is not readable as a store
        ConceptStore(path) if which == "concepts" else ActivationStore(path)
    concepts = prepare_concept_store(root, cfg.paths.cache_dir, progress=False)
    acts = prepare_activation_store(cfg, concepts)
    assert (concepts.path if which == "concepts" else acts.path) == path
    got = store_arrays(concepts, acts)
    for key, value in expected.items():
        np.testing.assert_array_equal(got[key], value, err_msg=key)
    concepts.close()
    acts.close()


def test_a_corrupt_cached_probe_is_retrained_not_loaded(tmp_path, data_dir):
    work, cache = tmp_path / "a", tmp_path / "cache"
    first = run_in_process(work, cache, data_dir, BASE)
    (cached,) = (cache / "probes").glob("*.safetensors")
    truncate(cached)
    again = run_in_process(tmp_path / "b", cache, data_dir, BASE)
    assert again == first


# --- reproducibility ------------------------------------------------------------------------


def test_the_same_seed_gives_an_identical_results_csv(tmp_path, data_dir):
    first = run_in_process(tmp_path / "a", tmp_path / "cache-a", data_dir, BASE)
    second = run_in_process(tmp_path / "b", tmp_path / "cache-b", data_dir, BASE)  # nothing cached
    assert second == first
    other = run_in_process(tmp_path / "c", tmp_path / "cache-a", data_dir, [*BASE, "seed=1"])
    assert other != first, (
        "results.csv does not depend on the seed: the comparison above is vacuous"
    )


# --- concurrency ----------------------------------------------------------------------------


@pytest.mark.slow
def test_two_processes_needing_the_same_store_build_it_once(tmp_path):
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    spec = driver_spec(
        tmp_path / "work",
        tmp_path / "cache",
        tmp_path / "data",
        BASE,
        mode="stores",
        barrier=str(barrier),
        parties=2,
    )
    procs = [
        subprocess.Popen(
            [PYTHON, "-c", DRIVER, json.dumps(spec)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=environment(),
            cwd=TESTS.parent,
        )
        for _ in range(2)
    ]
    outputs = [proc.communicate(timeout=300)[0] for proc in procs]
    for proc, out in zip(procs, outputs):
        assert proc.returncode == 0, out[-3000:]
    lines = [line for out in outputs for line in out.splitlines()]
    for what in ("dataset", "concepts", "planted"):
        assert sum(line == f"BUILD {what}" for line in lines) == 1, (
            f"{what} built {lines.count(f'BUILD {what}')} times"
        )
    found = [
        json.loads([line for line in out.splitlines() if line.startswith("{")][-1])
        for out in outputs
    ]
    assert found[0] == found[1] and found[0]["pairs"] > 0
