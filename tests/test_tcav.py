"""task=tcav: directional derivatives vs a one-concept autograd reference, scores vs Captum's
TCAV on the same vectors, the t-test + BH, and a planted network whose answer is known."""

from __future__ import annotations

import csv
import functools
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from torch import nn

from net2vec.analysis.report import Report
from net2vec.analysis.tcav_report import add_tcav_sections, is_tcav_run, load_tcav
from net2vec.common.errors import ConfigError
from net2vec.features.hooks import NetworkError
from net2vec.features.planted import PlantedSource
from net2vec.features.planted_head import PlantedClassifier
from net2vec.probes.cavs import cav_plan
from net2vec.probes.directional import ClassOutput, directional_derivatives, summed_gradients
from net2vec.probes.fitting import Fitter
from net2vec.probes.tcav import TcavTask
from net2vec.probes.tcav_outcome import TcavOutcome
from net2vec.probes.tcav_pass import ClassImages, TcavPass
from net2vec.statistics.tcav import tcav_test


class TinyNet(nn.Module):
    """conv -> relu -> conv ('layer') -> relu -> conv -> mean -> linear: 5 classes."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.stem = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU())
        self.layer = nn.Conv2d(6, 8, 3, padding=1)
        self.tail = nn.Sequential(nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.Tanh())
        self.head = nn.Linear(8, 5)

    def forward(self, x):
        return self.head(self.tail(self.layer(self.stem(x))).mean((2, 3)))


def unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_directional_derivatives_match_one_concept_autograd():
    model, x = TinyNet().eval(), torch.randn(6, 3, 7, 7, generator=torch.Generator().manual_seed(1))
    vectors = torch.from_numpy(unit(np.random.default_rng(2).normal(size=(4, 8))))
    net = ClassOutput(model, "layer")

    def sets(logits):  # two class sets: classes 0-2 and 3-4, for every image
        return [torch.arange(3)[:, None].expand(3, 6), torch.arange(3, 5)[:, None].expand(2, 6)]

    grads, _ = summed_gradients(net, x, sets)
    batched = directional_derivatives(grads, vectors.t())  # (5 classes, 6 images, 4 vectors)
    for k in range(5):
        for d in range(4):
            layer = model.layer(model.stem(x))  # the model's own forward, split at the layer
            logits = model.head(model.tail(layer).mean((2, 3)))
            (grad,) = torch.autograd.grad(logits[:, k].sum(), layer)
            reference = (grad * vectors[d].float()[None, :, None, None]).sum((1, 2, 3))
            np.testing.assert_allclose(batched[k, :, d].numpy(), reference.numpy(), atol=1e-5)


def test_scores_match_captum(tmp_path):
    concept_mod = pytest.importorskip("captum.concept", reason="captum is a dev extra (CI has it)")
    from captum.concept._utils.classifier import Classifier

    model, generator = TinyNet(3).eval(), torch.Generator().manual_seed(4)
    inputs = torch.randn(24, 3, 6, 6, generator=generator)
    vectors = unit(np.random.default_rng(5).normal(size=(3, 8)))
    flat = {i: torch.from_numpy(np.repeat(v, 36)).float() for i, v in enumerate(vectors)}
    flat[3] = -flat[0]  # the "random" concept's row is never read

    class Given(Classifier):
        """Captum's classifier interface handing back net2vec's vectors, tiled over locations."""

        def __init__(self) -> None:
            self.ids = []

        def train_and_eval(self, dataloader, **kwargs):
            self.ids = sorted({int(label) for _, labels in dataloader for label in labels})
            return {"accs": torch.tensor(1.0)}

        def weights(self):
            return torch.stack([flat[i] for i in self.ids])

        def classes(self):
            return self.ids

    data = [torch.randn(2, 3, 6, 6, generator=generator)]
    concepts = [concept_mod.Concept(i, f"c{i}", data) for i in range(4)]
    tcav = concept_mod.TCAV(model, ["layer"], classifier=Given(), save_path=str(tmp_path))
    sets = [[concepts[i], concepts[3]] for i in range(3)]
    for target in (0, 2, 4):
        ours = TcavPass(
            ClassOutput(model, "layer"),
            vectors,
            ClassImages("all", np.arange(5), None, [target]),
            4,
        )
        ours.update(np.arange(24), inputs, ablate=False)
        theirs = tcav.interpret(inputs, sets, target=target)
        captum = [float(theirs[f"{i}-3"]["layer"]["sign_count"][0]) for i in range(3)]
        np.testing.assert_allclose(ours.scores()[:, 0], captum, atol=1e-12)


def test_t_test_and_benjamini_hochberg():
    rng = np.random.default_rng(0)
    random = rng.uniform(0.3, 0.7, size=(50, 2))
    concept = np.stack([np.full((10, 2), 0.95), rng.uniform(0.3, 0.7, (10, 2))])
    result = tcav_test(concept, random, np.array([True, False]))
    assert result.significant[0, 0] and not result.significant[1, 0]
    assert np.isnan(result.p[:, 1]).all() and not result.significant[:, 1].any()
    constant = tcav_test(np.ones((1, 4, 1)), np.ones((6, 1)))  # identical constants: p = 1
    assert constant.p[0, 0] == 1.0


def planted_stores(n: int = 800, k: int = 12, seed: int = 0):
    """Four independent concepts A-D, each planted in two filters (A: 0, 1 … D: 6, 7) at a
    random half of the 4×4 locations; filters 8-11 carry noise only."""
    rng = np.random.default_rng(seed)
    presence = rng.random((n, 4)) < 0.4
    maps = 0.1 * np.abs(rng.normal(size=(n, k, 4, 4)))
    where = rng.random((n, 4, 4, 4)) < 0.5
    for c in range(4):
        for f in (2 * c, 2 * c + 1):
            maps[:, f] += presence[:, c, None, None] * where[:, c] * rng.uniform(1, 2, (n, 1, 1))
    split = np.arange(n) % 2
    concepts = SimpleNamespace(
        presence=presence, split=split, names=np.array(list("ABCD")),
        categories=np.array(["object"] * 4), n_train=presence[split == 0].sum(0), num_images=n,
    )  # fmt: skip
    activations = SimpleNamespace(
        num_images=n, num_filters=k, pooled=lambda: maps.mean((2, 3)).astype(np.float32)
    )
    return concepts, activations, torch.from_numpy(maps).float()


@pytest.mark.slow
def test_planted_head_reads_concept_a(tmp_path):
    concepts, activations, maps = planted_stores()
    reads = np.zeros((2, 12))
    reads[0, [0, 1]] = 1.0  # class 0 reads A's filters only
    reads[1, [4, 5]] = 1.0  # class 1 reads C's filters only
    model = PlantedClassifier(reads)
    module = functools.partial(
        __import__("net2vec.probes.classification", fromlist=["x"]).ClassificationProbe,
        ref_batch_size=64,
    )
    task = TcavTask("tcav", SimpleNamespace(name="planted-head", build=None), module, "layer",
                    tmp_path, random_concepts=100, repeats=10, images="all", min_images=5,
                    batch_size=400)  # fmt: skip
    trainer = functools.partial(
        pl.Trainer, max_epochs=60, check_val_every_n_epoch=60, accelerator="cpu", enable_progress_bar=False,
        enable_model_summary=False, num_sanity_val_steps=0,
    )  # fmt: skip
    fitter = Fitter(trainer, None, tmp_path / "run", tmp_path / "cache", {"planted": 1}, "planted")
    tested = task.tested_concepts(concepts)
    plan, vectors = task.fit_cavs(concepts, activations, tested, fitter)
    tcav = TcavPass(
        ClassOutput(model, "layer"), vectors, ClassImages("all", np.arange(2), None, None), 2
    )
    val = np.flatnonzero(concepts.split == 1)
    for start in range(0, len(val), 100):
        tcav.update(val[start : start + 100], maps[val[start : start + 100]], ablate=False)
    test = task.outcome(concepts, tested, plan, vectors, tcav).test
    assert test.significant[0, 0] and test.score[0, 0] > 0.95  # A for the class reading A
    assert not test.significant[1, 0]  # B, unrelated
    assert test.significant[2, 1] and test.score[2, 1] > 0.95  # C for the class reading C
    assert not test.significant[0, 1]  # A does not drive class 1


def test_plan_columns():
    presence = np.random.default_rng(0).random((40, 3)) < 0.5
    plan = cav_plan(presence, np.arange(40) % 2, np.array([0, 2]), 4, 6, "split", 0)
    assert len(plan.concept) == 2 * 4 + 6 and plan.random.sum() == 6
    drawn = plan.weights[:, :4] > 0  # concept 0's four shares of the 20 train images: disjoint
    assert (drawn.sum(1) <= 1).all() and drawn.sum() >= 15
    np.testing.assert_array_equal(plan.labels[:, 0], presence[:, 0])
    assert sorted(plan.labels[:, 8]) == sorted(presence[:, 0])  # a permutation of concept 0's


@pytest.mark.slow
def test_default_tcav_run_names_significant_concepts(tmp_path, default_root):
    """`python train.py task=tcav` on the embedded default (synthetic set, synthnet, conv5):
    significant concepts for synthnet's scene classes, and the files' columns."""
    root = Path(__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("NET2VEC_")}
    env["WANDB_MODE"] = "offline"  # the data and stores of the default run, when it ran first
    run = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "train.py", "task=tcav", f"paths.root_dir={default_root}",
         f"hydra.run.dir={run}", "logger=csv", "trainer.enable_progress_bar=false"],
        cwd=root, env=env, capture_output=True, text=True, timeout=1800,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    with open(run / "tcav.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0])[-7:] == ["score", "score_lo", "score_hi", "random_mean", "p", "q",
                                  "significant"]  # fmt: skip
    tested = [r for r in rows if r["p"]]
    hits = [r for r in tested if r["significant"] == "1"]
    assert hits and len(hits) < len(tested)  # some concepts matter, not all
    for r in tested:
        assert float(r["score_lo"]) <= float(r["score"]) <= float(r["score_hi"])
        assert float(r["q"]) >= float(r["p"])
    summary = json.loads((run / "summary.json").read_text())["tcav"]
    assert summary["random_concepts"] == 100 and summary["repeats"] == 10
    assert summary["images"] == "labelled"  # synthnet's classes are the dataset's scenes
    named = [
        f"{h['concept']} {h['score']:.2f}" for hits in summary["significant"].values() for h in hits
    ]
    assert any(name in done.stdout for name in named)  # the terminal names them
    with open(run / "ablation.csv") as handle:
        variants = {r["variant"] for r in csv.DictReader(handle)}
    assert variants == {"project", "clamp"}


def test_outcome_files_log_and_report(tmp_path):
    rng = np.random.default_rng(0)
    concept = np.concatenate([np.full((1, 10, 3), 0.97), rng.uniform(0.3, 0.7, (2, 10, 3))])
    random = rng.uniform(0.3, 0.7, (100, 3))
    drops = {"prob_drop": rng.random((3, 3)), "acc_drop": rng.random((3, 3)),
             "random_prob_drop": rng.random((5, 3)), "random_acc_drop": rng.random((5, 3)),
             "p": rng.random((3, 3))}  # fmt: skip
    outcome = TcavOutcome(
        np.array(["a", "b", "c"]), np.array(["object"] * 3), np.array(["x", "y", "z"]),
        np.array([20, 20, 20]), tcav_test(concept, random), concept, random,
        np.zeros((130, 4), np.float32), {"project": drops, "clamp": drops},
        {"random_concepts": 100, "repeats": 10, "resample": "split", "images": "all",
         "alpha": 0.05, "layer": "conv5"},
    )  # fmt: skip
    summary = outcome.write(tmp_path, {"network": "n", "layer": "conv5"}, {"total": 1.0}, {})
    assert summary["tcav"]["significant_cells"] == 3  # concept a, every class
    assert "x: a 0.97" in outcome.terminal(summary)
    logged = []
    logger = SimpleNamespace(log_metrics=logged.append, log_table=lambda **k: logged.append(k))
    outcome.log(logger, summary)
    assert logged[0] == {"tcav/tested_cells": 9, "tcav/significant_cells": 3}
    assert [t["key"] for t in logged[1:]] == ["tcav", "ablation"]
    run = load_tcav(tmp_path)
    assert is_tcav_run(tmp_path) and len(run.tcav["score"]) == 9
    report = Report(tmp_path / "report")
    add_tcav_sections(report, [run])
    assert (
        len(report.figures) == 4 and len(report.tables["tcav_significant_n-conv5-tcav"].rows) == 3
    )


def test_networks_without_class_scores_are_one_line_errors():
    planted = PlantedSource()
    with pytest.raises(ConfigError, match="network=planted: it has no model"):
        TcavTask("tcav", planted, None, "conv5", ".")
    dense = ClassOutput(nn.Sequential(nn.Conv2d(3, 4, 1), nn.Conv2d(4, 2, 1)), "0")
    with pytest.raises(NetworkError, match=r"\(2, 2, 3, 3\) is not \(batch, classes\)"):
        dense(torch.zeros(2, 3, 3, 3))
