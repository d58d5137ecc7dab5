"""The framework around the probes: DDP, W&B offline, Hydra multirun and launchers, one-line errors.

DDP and multirun run `train.py` in a subprocess, as a user would (Lightning reruns the command for
rank 1); the single-process reference runs in this process. Data: network=planted on the tiny
synthetic set of conftest (80 images of 64 px, 3 epochs), batches of 8 images so that an epoch has
several steps and the DDP ranks' shares of a batch differ.
"""

from __future__ import annotations

import csv
import json
import os
import re
import struct
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import h5py
import numpy as np
import pytest
import torch
from conftest import CONF, TINY, compose_config
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from net2vec.analysis import evaluate
from net2vec.analysis.dissection_report import load_dissection
from net2vec.cli import check_choices
from net2vec.common.errors import ConfigError
from net2vec.data.classification_data import ClassificationDataModule
from net2vec.data.concept_store import ConceptStore
from net2vec.data.datamodules import EpochShuffle
from net2vec.probes.segmentation import init_weights
from net2vec.run import identity as identity_module
from net2vec.run.config import check_config
from net2vec.run.identity import (
    flat_config,
    group_name,
    report_identity,
    run_identity,
    swept_keys,
)
from net2vec.run.loggers import MonotonicSteps
from net2vec.run.pipeline import train

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
SMALL_BATCHES = ["network=planted", "task.batch_size=8"]


def read_results(run_dir: Path) -> list[dict]:
    with open(run_dir / "results.csv") as handle:
        return list(csv.DictReader(handle))


def environment(tmp_path: Path) -> dict:
    env = dict(os.environ, WANDB_MODE="offline", WANDB_SILENT="true", HYDRA_FULL_ERROR="0")
    for name in ("NET2VEC_ROOT", "NET2VEC_DATA", "NET2VEC_CACHE"):
        env.pop(name, None)
    env["WANDB_DIR"] = env["WANDB_CACHE_DIR"] = env["WANDB_CONFIG_DIR"] = str(
        tmp_path / "wandb-home"
    )
    return env


def run_script(tmp_path: Path, *args: str, script: str = "train.py", timeout: int = 300):
    """Run an entry point of the repository with `args`; stdout and stderr separately."""
    return subprocess.run(
        [PYTHON, str(ROOT / script), *args],
        cwd=tmp_path,
        env=environment(tmp_path),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def paths(workdir: Path, data_dir: Path, cache: Path, run_dir: Path | None = None) -> list[str]:
    """The path overrides of conftest.compose_config, for a command line."""
    out = [
        f"paths.root_dir={workdir}",
        f"paths.data_dir={data_dir}",
        f"paths.cache_dir={cache}",
        f"hydra.run.dir={workdir}/hydra",
        f"hydra.sweep.dir={workdir}/multirun",
    ]
    return out + ([f"paths.output_dir={run_dir}"] if run_dir is not None else [])


# --- DDP -------------------------------------------------------------------------------------


def numeric_columns(rows: list[dict]) -> dict[str, np.ndarray]:
    """results.csv's numeric columns; an empty cell (a value not computed) reads as NaN."""
    keep = [key for key in rows[0] if key not in ("concept", "category")]
    return {key: np.array([float(row[key] or "nan") for row in rows]) for key in keep}


def max_difference(a: np.ndarray, b: np.ndarray) -> float:
    """Largest |a - b| over the cells both hold; cells empty in one only count as a difference."""
    if not np.array_equal(np.isnan(a), np.isnan(b)):
        return float("inf")
    return float(np.nanmax(np.abs(a - b), initial=0.0))


def test_ddp_shards_every_batch_exactly():
    for epoch in (0, 1):
        shards = [EpochShuffle(21, seed=3, batch_size=8, rank=r, world_size=2) for r in (0, 1)]
        reference = EpochShuffle(21, seed=3, batch_size=8)
        for sampler in (*shards, reference):
            sampler.set_epoch(epoch)
        per_rank = [list(s) for s in shards]
        assert len(per_rank[0]) == len(per_rank[1]) == len(shards[0]) == 3
        for step, batch in enumerate(reference):
            assert sorted(per_rank[0][step] + per_rank[1][step]) == sorted(batch)
            assert not set(per_rank[0][step]) & set(per_rank[1][step])
    assert list(EpochShuffle(5, 0, 2, shuffle=False)) == [[0, 1], [2, 3], [4]]
    assert list(EpochShuffle(5, 0, 2, shuffle=False, rank=1, world_size=2)) == [[1], [3], []]
    assert list(EpochShuffle(21, seed=3, batch_size=8)) != list(
        EpochShuffle(21, seed=4, batch_size=8)
    )


def test_classification_batches_are_sharded_the_same_way():
    n, concepts = 30, 3
    split = np.array([0] * 21 + [1] * 9, dtype=np.uint8)
    presence = np.random.default_rng(0).random((n, concepts)) < 0.4
    store = SimpleNamespace(num_images=n, split=split, presence=presence)
    acts = SimpleNamespace(
        num_images=n, pooled=lambda: np.random.default_rng(1).random((n, 4), dtype=np.float32)
    )
    dm = ClassificationDataModule(store, acts, batch_size=8, seed=2)
    whole = [b["image_index"].tolist() for b in dm._train_batches(epoch=1)]
    halves = [[b["image_index"].tolist() for b in dm._train_batches(1, rank, 2)] for rank in (0, 1)]
    assert [sorted(a + b) for a, b in zip(*halves)] == [sorted(batch) for batch in whole]
    val = [[b["image_index"].tolist() for b in dm._val_batches(rank, 2)] for rank in (0, 1)]
    assert (
        sorted(sum(val[0] + val[1], [])) == list(range(21, 30)) and len(val[0]) == len(val[1]) == 2
    )


def ddp_vs_one_process(tmp_path: Path, shared_cache: Path, task: str) -> dict:
    """Train once with trainer=ddp (2 CPU ranks, gloo) and once in this process; compare."""
    common = [*SMALL_BATCHES, f"task={task}", "probe.subsets=[1,4]"]
    data_dir = shared_cache / "data"
    reference = compose_config(
        tmp_path / "one", *common, f"paths.data_dir={data_dir}", cache=tmp_path / "cache-one"
    )
    train(reference)
    run_dir = tmp_path / "ddp" / "run"
    done = run_script(
        tmp_path,
        *TINY,
        *common,
        "trainer=ddp",
        "logger=wandb",
        *paths(tmp_path / "ddp", data_dir, tmp_path / "cache-ddp", run_dir),
    )
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-4000:]
    _, records = wandb_run(run_dir)  # one W&B run: rank 0's
    assert wandb_run_info(records).config["trainer.devices"] == 2
    assert "[rank: 1]" in log and "Initializing distributed: GLOBAL_RANK: 1, MEMBER: 2/2" in log
    assert log.count("run directory:") == 1  # only rank 0 writes the run's files
    assert (
        len(re.findall(r"concept store: \d+ concepts kept", log)) == 1
        and "concept store: reusing" in log
    )
    assert "activation store: reusing" in log  # rank 1 finds the store rank 0 built
    one, ddp = read_results(tmp_path / "one" / "run"), read_results(run_dir)
    assert [r["concept"] for r in one] == [r["concept"] for r in ddp]
    a, b = numeric_columns(one), numeric_columns(ddp)
    diffs = {key: max_difference(a[key], b[key]) for key in a}
    with (
        h5py.File(tmp_path / "one" / "run" / "embeddings.h5") as x,
        h5py.File(run_dir / "embeddings.h5") as y,
    ):
        for key in ("weights", "bias", "subsets/F4/weights"):
            diffs[f"embeddings/{key}"] = float(np.abs(x[key][:] - y[key][:]).max())
        trained = y["weights"][:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["config"]["task"] == task
    store = ConceptStore(summary["stores"]["concept_store"])
    assert str(store.path).startswith(str(tmp_path / "cache-ddp"))
    start = init_weights(store.num_concepts, trained.shape[1], seed=0).numpy()
    start = start[store.pixel_level] if task == "seg" else start
    assert np.abs(trained - start).max() > 1e-4  # the comparison is not of untrained probes
    return diffs


@pytest.mark.parametrize("task", ["seg", pytest.param("cls", marks=pytest.mark.slow)])
def test_ddp_gives_the_results_of_one_process(tmp_path, shared_cache, task):
    diffs = ddp_vs_one_process(tmp_path, shared_cache, task)
    print(f"max |DDP - one process| ({task}):", json.dumps(diffs))
    assert max(diffs.values()) <= 1e-5, diffs


def test_only_rank_zero_takes_the_probe_cache_lock(monkeypatch, tmp_path):
    from pytorch_lightning.utilities.rank_zero import rank_zero_only

    from net2vec.common import cache
    from net2vec.probes import fitting
    from net2vec.probes.base import ddp_loss_scale
    from net2vec.probes.segmentation import SegmentationProbe

    assert ddp_loss_scale(SegmentationProbe(2, 3, np.full(2, 0.9))) == 1  # no trainer: no scaling
    taken = []
    real_lock = cache.file_lock
    monkeypatch.setattr(cache, "file_lock", lambda path: taken.append(path) or real_lock(path))
    fitter = fitting.Fitter(None, None, tmp_path / "run", tmp_path / "cache", {}, "probe")
    monkeypatch.setattr(fitter, "fit", lambda *args: None)
    for rank, locks, cached in ((1, 0, 0), (0, 1, 1)):
        monkeypatch.setattr(rank_zero_only, "rank", rank)
        fitter.fit_all_filters(torch.nn.Linear(2, 2), None)
        assert len(taken) == locks
        assert len(list((tmp_path / "cache" / "probes").glob("*.safetensors"))) == cached
        taken.clear()


# --- W&B offline -----------------------------------------------------------------------------


def wandb_records(path: Path):
    """The protobuf records of a .wandb file (LevelDB-style log: 32 KiB blocks of chunks)."""
    from wandb.proto import wandb_internal_pb2

    data, block, pos, pending = path.read_bytes(), 32768, 7, b""  # 7-byte ':W&B' header
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # block trailer: padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        chunk, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
        if kind == 0 and length == 0:
            pos += block - pos % block if pos % block else 0
            continue
        pending = chunk if kind in (1, 2) else pending + chunk  # full, first | middle, last
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            yield record


def wandb_run(directory: Path) -> tuple[Path, list]:
    """The one offline W&B run under ``directory/wandb``: its folder and its records."""
    import wandb

    wandb.teardown()  # a finished run's file is complete once this process's W&B service stops
    files = list((directory / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(files) == 1, files
    return files[0].parent, list(wandb_records(files[0]))


def wandb_run_info(records: list) -> SimpleNamespace:
    """Name, group, job type, tags and config of a run, as its run record holds them."""
    run = next(r.run for r in records if r.WhichOneof("record_type") == "run")
    config = {item.key: json.loads(item.value_json) for item in run.config.update}
    return SimpleNamespace(
        name=run.display_name,
        group=run.run_group,
        job_type=run.job_type,
        tags=list(run.tags),
        config=config,
    )


def wandb_history(run_dir: Path) -> list[dict]:
    _, records = wandb_run(run_dir)
    return [
        {
            item.key or "/".join(item.nested_key): json.loads(item.value_json)
            for item in record.history.item
        }
        for record in records
        if record.WhichOneof("record_type") == "history"
    ]


def test_wandb_offline_holds_the_epoch_metrics_and_the_results_table(
    tmp_path, shared_cache, monkeypatch
):
    for name in (
        "WANDB_DIR",
        "WANDB_CACHE_DIR",
        "WANDB_CONFIG_DIR",
        "WANDB_DATA_DIR",
        "WANDB_ARTIFACT_DIR",
    ):
        monkeypatch.setenv(name, str(tmp_path / "wandb-home"))
    monkeypatch.setenv("WANDB_MODE", "offline")
    cfg = compose_config(
        tmp_path,
        "network=planted",
        "probe.subsets=[1,4]",
        "logger=wandb",
        "task.batch_size=16",
        f"paths.data_dir={shared_cache}/data",
        cache=tmp_path / "cache",
    )
    train(cfg)
    run_dir = tmp_path / "run"
    history = wandb_history(run_dir)
    epochs = {
        name: [h["epoch"] for h in history if name in h]
        for name in ("train/loss", "val/mean_iou", "val/mean_iou_F1", "val/mean_iou_F4")
    }
    assert epochs["train/loss"] == [0, 1, 2, 0, 1, 2]  # all filters, then the subsets
    assert epochs["val/mean_iou"][:3] == [0, 1, 2] and epochs["val/mean_iou_F4"][:3] == [0, 1, 2]
    steps = [h["trainer/global_step"] for h in history if "trainer/global_step" in h]
    assert steps == sorted(steps) and steps[-1] > 3, steps  # the second fit continues the axis
    assert [h["_step"] for h in history] == list(range(len(history)))
    summary = json.loads((run_dir / "summary.json").read_text())
    last = {key: value for h in history for key, value in h.items()}
    assert last["summary/all/all"] == pytest.approx(summary["mean_by_category"]["all"]["all"])
    rows = read_results(run_dir)
    run_files = next((run_dir / "wandb").glob("offline-run-*/files"))
    table_path = next(run_files.glob("media/table/results_*.table.json"))
    table = json.loads(table_path.read_text())
    assert table["columns"] == list(rows[0]) and len(table["data"]) == len(rows)
    assert [str(row[0]) for row in table["data"]] == [row["concept"] for row in rows]
    assert last["results/nrows"] == len(rows) and last["results/_type"] == "table-file"
    check_per_category_curves(history, rows)
    check_run_identity(run_dir, summary)
    check_plots(run_files, summary)


def check_per_category_curves(history: list[dict], rows: list[dict]) -> None:
    """Every validation pass logs each head's mean per category; the last pass of each fit
    equals the per-category mean of results.csv (brute force)."""
    categories = sorted({row["category"] for row in rows})
    for column, metric in (("iou_val", "mean_iou"), ("iou_val_F4", "mean_iou_F4")):
        for category in categories:
            key = f"val_by_category/{category}/{metric}"
            logged = [h for h in history if key in h]
            assert [h["epoch"] for h in logged] == [0, 1, 2, 3], key  # 3 epochs + final validate
            assert all("trainer/global_step" in h for h in logged)
            expected = np.mean([float(r[column]) for r in rows if r["category"] == category])
            assert logged[-1][key] == pytest.approx(expected, abs=1e-5), key


def check_run_identity(run_dir: Path, summary: dict) -> None:
    """The run's W&B name, group, job type, tags and flattened resolved config."""
    from importlib.metadata import version

    from net2vec import __version__

    info = wandb_run_info(wandb_run(run_dir)[1])
    assert info.name == "planted-conv5-seg" and info.job_type == "seg"
    # a single run: its own folder, relative to the outputs root (paths.root_dir)
    assert info.group == "run" == summary["config"]["group"]
    assert info.tags == ["network:planted", "layer:conv5", "task:seg"]
    expected = {
        "network.name": "planted",
        "network.weights": "planted",
        "layer": "conv5",
        "task.name": "seg",
        "data.name": "synthetic",
        "data.images": 80,
        "probe.quantile": 0.005,
        "probe.subsets": [1, 4],
        "task.loss": "paper",
        "task.optimizer._target_": "torch.optim.SGD",
        "task.optimizer.lr": 1e-4,
        "task.epochs": 3,
        "task.batch_size": 16,
        "seed": 0,
        "versions.torch": version("torch"),
        "versions.net2vec": __version__,
    }
    assert {key: info.config.get(key) for key in expected} == expected
    store = ConceptStore(summary["stores"]["concept_store"])
    assert info.config["data.index_fingerprint"] == store.attrs["index_fingerprint"]
    assert info.config["stores.concepts"] == store.path.name
    assert not any(key.startswith(("hydra.", "task.module", "logger.")) for key in info.config)


def check_plots(run_files: Path, summary: dict) -> None:
    """The native plots' tables: single vs all per category; the score against F per category."""
    bars = json.loads(next(run_files.glob("media/table/plots/single_vs_all_table_*")).read_text())
    by_category = summary["mean_by_category"]
    expected = [[f"{c} / {p}", row[p]] for c, row in by_category.items() for p in ("single", "all")]
    assert [[label, pytest.approx(value)] for label, value in bars["data"]] == expected
    lines = json.loads(next(run_files.glob("media/table/plots/score_vs_F_table_*")).read_text())
    points = {(str(key), x): y for x, key, y in lines["data"]}
    assert len(points) == 3 * len(by_category)  # F = 1, 4 and K = 64 (all filters)
    for category, row in by_category.items():
        assert points[(category, 4)] == pytest.approx(row["F4"])
        assert points[(category, 64)] == pytest.approx(row["all"])


def test_wandb_netdissect_report_holds_every_unit_strip(tmp_path, shared_cache, monkeypatch):
    """A task=netdissect run on W&B, then evaluate.py logger=wandb on it: the report's run is in
    the run's group and holds one strip per unit (one page: K = 64 units)."""
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb-home"))
    cfg = compose_config(
        tmp_path,
        "network=planted",
        "task=netdissect",
        "task.top_images=3",
        "logger=wandb",
        f"paths.data_dir={shared_cache}/data",
        cache=tmp_path / "cache",
    )
    train(cfg)
    run = wandb_run_info(wandb_run(tmp_path / "run")[1])
    assert (run.name, run.job_type, run.group) == ("planted-conv5-netdissect", "netdissect", "run")
    bars = json.loads(
        next(
            (tmp_path / "run").glob("wandb/*/files/media/table/plots/detectors_table_*")
        ).read_text()
    )
    counts = json.loads((tmp_path / "run" / "summary.json").read_text())["netdissect"]
    assert {row[0]: row[1] for row in bars["data"]} == {
        cat: c["detectors"] for cat, c in counts["by_category"].items()
    }
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        settings = [f"runs=[{tmp_path / 'run'}]", "logger=wandb", "unit_images=3"]
        report = evaluate(compose("evaluate", overrides=[*settings, f"output_dir={tmp_path}/r"]))
    folder, records = wandb_run(tmp_path / "r")
    assert wandb_run_info(records).group == run.group
    page = list(folder.glob("files/media/images/netdissect/*/units_page_001_*.png"))
    units = load_dissection(tmp_path / "run").units
    assert len(units) == 64 and len(page) == 64
    assert not list(folder.glob("files/media/images/netdissect/*/units_page_002_*"))
    figures = list(folder.glob("files/media/images/figures/*.png"))
    assert len(figures) == len(report.figures) >= 2  # detector bars, best units' strips


def test_log_images_takes_figures_arrays_pil_images_and_files(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    from PIL import Image

    from net2vec.common.wandb_media import log_images

    logged = []
    run = SimpleNamespace(log=logged.append)
    figure = plt.figure(figsize=(3, 2), dpi=50)
    pixels = np.arange(6 * 4 * 3, dtype=np.uint8).reshape(6, 4, 3)
    Image.fromarray(pixels).save(tmp_path / "unit.png")
    images = [("fig", figure), ("array", pixels), ("pil", Image.fromarray(pixels))]
    assert log_images(run, [*images, ("file", tmp_path / "unit.png")], prefix="units") == 4
    assert log_images(run, []) == 0 and len(logged) == 1
    sizes = {key: image.image.size for key, image in logged[0].items()}
    assert sizes == {
        "units/fig": (150, 100),
        "units/array": (4, 6),
        "units/pil": (4, 6),
        "units/file": (4, 6),
    }
    plt.close(figure)


def test_run_identity_names_sweeps_flattens_config_and_groups_reports(tmp_path, monkeypatch):
    overrides = ["task=seg,cls", "seed=1", "+x=range(0,3)", "layer=glob(conv*)", "a.b=[1,2]"]
    assert swept_keys(overrides, {"network": "alexnet,vgg16"}) == {"task", "x", "layer", "network"}
    cfg = compose_config(tmp_path, "network=planted", "probe.subsets=[1,4]")
    flat = flat_config(cfg)
    assert flat["task.optimizer.lr"] == cfg.task.optimizer.lr and flat["probe.subsets"] == [1, 4]
    assert flat["task.batch_size"] == cfg.task.batch_size and flat["paths.output_dir"].endswith(
        "run"
    )
    assert not [k for k in flat if k.startswith(("task.datamodule", "task.module", "logger"))]
    assert not [k for k in flat if k.endswith("_partial_")]
    monkeypatch.chdir(tmp_path)
    assert group_name(tmp_path / "multirun" / "x") == "multirun/x"
    sweep = tmp_path / "out" / "multirun" / "2026-12-02" / "21-40-00"
    assert group_name(sweep, tmp_path / "out") == "multirun/2026-12-02/21-40-00"
    assert group_name(sweep, tmp_path / "out", "table1") == (
        "experiment=table1 multirun/2026-12-02/21-40-00"
    )
    assert group_name("/elsewhere/" + "d" * 200) == ("/elsewhere/" + "d" * 200)[-128:]
    single = run_identity("alexnet", "conv5", "cls", tmp_path / "r", {"k": 1})  # no Hydra run
    assert (single.name, single.group, single.job_type) == ("alexnet-conv5-cls", "r", "cls")
    rooted = run_identity("alexnet", "conv5", "cls", sweep / "0", {}, root=tmp_path / "out")
    assert rooted.group == "multirun/2026-12-02/21-40-00/0"
    check_sweep_job_identity(sweep, tmp_path / "out", monkeypatch)
    assert report_identity(["s", "s", None], "other", "out", {}).group == "s"
    assert report_identity(["s", "t"], "sweep", "out", {}).group == "sweep"
    assert report_identity([], None, tmp_path / "out", {}).job_type == "evaluate"


def check_sweep_job_identity(sweep: Path, root: Path, monkeypatch) -> None:
    """A job of a preset's sweep (``-m experiment=demo seed=0,1``, the preset sweeping task):
    its group names the preset and the sweep folder, its name what the sweep varies."""
    sweep.mkdir(parents=True)
    OmegaConf.save(
        {
            "hydra": {
                "overrides": {"task": ["experiment=demo", "seed=0,1"]},
                "sweeper": {"params": {"task": "seg,cls"}},
            }
        },
        sweep / "multirun.yaml",
    )
    job = OmegaConf.create(
        {
            "mode": "RunMode.MULTIRUN",
            "sweep": {"dir": str(sweep)},
            "overrides": {"task": ["experiment=demo", "seed=1", "task=cls", "layer=conv5"]},
        }
    )
    assert identity_module.sweep_of_job(job) == (sweep, ["seed=1", "task=cls"], "demo")
    monkeypatch.setattr(identity_module, "_hydra_job", lambda: job)
    swept = run_identity("synthnet", "conv5", "cls", sweep / "1", {}, root=root)
    assert swept.name == "synthnet-conv5-cls seed=1"
    assert swept.group == "experiment=demo multirun/2026-12-02/21-40-00"
    assert swept.config["sweep.overrides"] == "seed=1,task=cls"


def test_monotonic_steps_continue_a_new_fit_after_the_last_step():
    logged = []
    inner = SimpleNamespace(
        log_metrics=lambda metrics, step=None: logged.append(step), name="n", version=1
    )
    logger = MonotonicSteps(inner)
    for step in (0, 2, 4, 4, 1, 3, 5, None, 0):
        logger.log_metrics({"m": 1.0}, step)
    assert logged == [0, 2, 4, 4, 4, 6, 8, None, 8]
    assert MonotonicSteps.wrap(None) is None and logger.version == 1


# --- Hydra multirun and launchers ---------------------------------------------------------------


def test_multirun_runs_every_job_and_builds_the_shared_stores_once(
    tmp_path, shared_cache, monkeypatch
):
    done = run_script(
        tmp_path,
        "-m",
        *TINY,
        "network=planted",
        "task=seg,cls",
        "task.epochs=2",
        "logger=wandb",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        *paths(tmp_path, shared_cache / "data", tmp_path / "cache"),
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    jobs = sorted((tmp_path / "multirun").glob("*-planted-conv5-*"))
    assert [job.name for job in jobs] == ["0-planted-conv5-seg", "1-planted-conv5-cls"]
    check_sweep_on_wandb(tmp_path, jobs, monkeypatch)
    for job in jobs:
        assert {"results.csv", "embeddings.h5", "summary.json"} <= {p.name for p in job.iterdir()}
    logs = "".join((job / "train.log").read_text() for job in jobs)
    assert (
        logs.count("concept store: 89 concepts kept") == 1
        and logs.count("concept store: reusing") == 1
    )
    assert (
        logs.count("activation store: built") == 1 and logs.count("activation store: reusing") == 1
    )
    assert len(list((tmp_path / "cache" / "activations").glob("*.h5"))) == 1
    stores = {
        json.loads((job / "summary.json").read_text())["stores"]["activation_store"] for job in jobs
    }
    assert len(stores) == 1


def check_sweep_on_wandb(tmp_path: Path, jobs: list[Path], monkeypatch) -> None:
    """The jobs of a multirun share one W&B group (the sweep folder), are named by what the
    sweep varies, and evaluate.py logger=wandb logs its report (tables, every figure as an
    image) as a run of its own in that group."""
    infos = [wandb_run_info(wandb_run(job)[1]) for job in jobs]
    assert [(i.name, i.job_type) for i in infos] == [
        ("planted-conv5-seg", "seg"),
        ("planted-conv5-cls", "cls"),
    ]
    groups = {info.group for info in infos}
    assert groups == {"multirun"}, groups  # the sweep folder, relative to the working directory
    assert {info.config["sweep.overrides"] for info in infos} == {"task=seg", "task=cls"}
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb-home"))
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(
            "evaluate",
            overrides=[
                f"sweep={tmp_path / 'multirun'}",
                "logger=wandb",
                "tsne=false",
                f"output_dir={tmp_path / 'report'}",
            ],
        )
    report = evaluate(cfg)
    folder, records = wandb_run(tmp_path / "report")
    info = wandb_run_info(records)
    assert info.group == "multirun" and info.job_type == "evaluate"  # read from the runs
    images = sorted(
        p.name.rsplit("_", 2)[0] for p in folder.glob("files/media/images/figures/*.png")
    )
    assert len(report.figures) >= 5 and images == sorted(report.figures)
    tables = list(folder.glob("files/media/table/tables/*.table.json"))
    assert len(tables) == len(report.tables)


@pytest.mark.parametrize(
    "launcher,target",
    [
        ("joblib", "JoblibLauncher"),
        ("submitit_slurm", "SlurmLauncher"),
    ],
)
def test_launcher_plugins_compose(launcher, target):
    pytest.importorskip(f"hydra_plugins.hydra_{launcher.split('_')[0]}_launcher")
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(
            "config",
            overrides=[
                f"hydra/launcher={launcher}",
                "trainer=ddp",
                "paths.root_dir=/tmp",
                "paths.output_dir=/tmp/r",
            ],
            return_hydra_config=True,
        )
    assert cfg.hydra.launcher._target_.endswith(target)
    assert cfg.trainer.strategy == "ddp" and cfg.trainer.devices == 2


# --- one-line errors ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args,fragments",
    [
        (["network=nope"], ["network='nope'", "alexnet", "planted"]),
        (["-m", "task=seg,nope"], ["task='nope'", "cls, compexp, netdissect, seg"]),
        (["network=planted", "layer=nope"], ["layer='nope'", "conv5"]),
        (["probe.quantile=1.5"], ["probe.quantile=1.5"]),
        (["network=planted", "probe.subsets=[9999]"], ["F=9999", "K=64"]),
    ],
)
def test_bad_values_end_the_command_with_one_line(tmp_path, args, fragments):
    done = run_script(
        tmp_path, *args, *paths(tmp_path, tmp_path / "data", tmp_path / "cache"), timeout=120
    )
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert lines[0].startswith("error: ") and all(f in lines[0] for f in fragments), lines[0]
    assert "Traceback" not in done.stdout + done.stderr and not (tmp_path / "cache").exists()


def test_evaluate_reports_a_bad_run_directory_in_one_line(tmp_path):
    done = run_script(
        tmp_path,
        f"runs=[{tmp_path}/nope]",
        f"hydra.run.dir={tmp_path}/eval",
        script="evaluate.py",
        timeout=120,
    )
    assert (
        done.returncode == 2 and done.stderr.strip().count("\n") == 0 and "error: " in done.stderr
    ), done.stderr


def test_group_choices_and_layers_are_checked_before_anything_runs(tmp_path):
    check_choices(
        CONF, ["network=planted", "task=seg,cls", "experiment=null", "probe.subsets=[1]", "+x=y"]
    )
    with pytest.raises(ConfigError, match="expected one of cls, compexp, netdissect, seg"):
        check_choices(CONF, ["task=seg,clss"])
    cfg = compose_config(tmp_path, "network=synthnet", "layer=conv2", "probe.subsets=[33]")
    with pytest.raises(ConfigError, match="K=32"):
        check_config(cfg)
    cfg = compose_config(tmp_path, "network=synthnet", "layer=conv2.0", "probe.subsets=[1]")
    check_config(cfg)  # a raw module path is a layer too
    assert not (tmp_path / "cache").exists()


def test_only_net2vec_errors_become_one_line():
    from net2vec.cli import one_line_errors

    with pytest.raises(ValueError, match="invalid literal"):
        with one_line_errors():
            int("x")  # raised inside Python, not by net2vec
    with pytest.raises(SystemExit) as stop:
        with one_line_errors():
            check_config(
                OmegaConf.create(
                    {"task": {"name": "seg"}, "probe": {"quantile": 2.0, "subsets": []}}
                )
            )
    assert stop.value.code == 2
