"""task=tcav against Captum's TCAV on the same network, layer, concepts, classes and images.

net2vec: every tested concept × ``repeats`` vectors + ``random_concepts`` controls in one batched
probe fit (the task's ``cavs`` stage), then one pass over the validation images (the ``tcav``
stage: one backward pass per image batch for every vector and class). Ablation is off for the
comparison (Captum has none); its cost is timed separately.

Captum (``captum.concept.TCAV``, its default SGD classifier, gradients of the class logit at the
layer): the same experiment in TCAV's own form — for each concept c, ``repeats`` experimental
sets [c, random_r] (c's positive train images against a random image set r), and
``random_concepts`` sets [random_0, random_j] for the null; ``interpret`` on each class's images.
Captum trains one classifier per set and scores sets one at a time, so its cost is linear in the
number of sets: a run on ``--captum-concepts`` concepts (× repeats) plus ``--captum-random``
random sets is timed (activations, CAVs, interpret on every class), and the full run is
extrapolated as (measured time per set) × (all sets) + the measured per-class attribution.

Scaling (printed): net2vec's CAV fit against the number of vectors M = C·R + N (repeats and
controls doubled), and the pass with ``images=all`` (every class scored on every image: one
backward pass per ``class_batch`` classes) against ``labelled`` (one backward pass per batch).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import hydra
import numpy as np
import torch
from common import compose, emit, machine, parser, planted_stores, setup
from torch.utils.data import DataLoader, TensorDataset

from net2vec.probes.tcav import TcavTask
from net2vec.run.pipeline import StageTimer, Stores, build_fitter


def ours(cfg, concepts, activations, run_dir: Path, **overrides) -> dict[str, float]:
    """Wall seconds of the task's stages; the CAV fit resumes from ``run_dir``'s finished
    checkpoint when a variant changes nothing the vectors depend on (ablation, images)."""
    cfg.paths.output_dir = str(run_dir)
    task = hydra.utils.instantiate(cfg.task, **overrides)
    fitter = build_fitter(cfg, None, run_dir, Stores(Path("."), concepts, activations))
    timer = StageTimer()
    task.run(concepts, activations, [], fitter, timer)
    return dict(timer.seconds)


def captum_run(task: TcavTask, concepts, tested, n_concepts: int, n_random: int, repeats: int):
    """Seconds of Captum's TCAV on a measured fraction; returns (seconds, sets, classes, fixed)."""
    from captum.concept import TCAV, Concept

    root = str(concepts.attrs["dataset_root"])
    model = task.network.build(root, task.cache_dir)
    path = task.network.resolve_layer(task.layer, model)
    split, presence = np.asarray(concepts.split), np.asarray(concepts.presence)
    rng = np.random.default_rng(0)
    train = np.flatnonzero(split == 0)

    def images(rows):
        batches = [x for _, x in task.batches(concepts, np.asarray(rows))]
        return torch.cat(batches)

    def loader(rows):
        return DataLoader(
            TensorDataset(images(rows)),
            batch_size=64,
            collate_fn=lambda b: torch.stack([x[0] for x in b]),
        )

    start = time.perf_counter()
    randoms = [Concept(1000 + r, f"random{r}", loader(rng.choice(train, 100, replace=False)))
               for r in range(max(repeats, n_random + 1))]  # fmt: skip
    sets = []
    for i, c in enumerate(tested[:n_concepts]):
        rows = train[presence[train, c]]
        concept = Concept(i, str(concepts.names[c]), loader(rows))
        sets += [[concept, randoms[r]] for r in range(repeats)]
    sets += [[randoms[0], randoms[j]] for j in range(1, n_random + 1)]
    with tempfile.TemporaryDirectory() as save:
        tcav = TCAV(ClassOutputModel(model), [f"model.{path}"], save_path=save)
        val = np.flatnonzero(split == 1)
        scenes = np.flatnonzero(np.asarray(concepts.categories).astype(str) == "scene")
        labels = presence[:, scenes].argmax(1)
        fixed = 0.0
        for k in range(len(scenes)):
            rows = val[presence[val][:, scenes].any(1) & (labels[val] == k)]
            if len(rows) == 0:
                continue
            x = images(rows)
            tcav.interpret(x, sets, target=k)
        seconds = time.perf_counter() - start
        tick = time.perf_counter()
        tcav.interpret(x, sets[:1], target=k)  # the per-class part that does not grow with sets
        fixed = time.perf_counter() - tick
    return seconds, len(sets), len(scenes), fixed


class ClassOutputModel(torch.nn.Module):
    """The network with its class scores as the only output (Captum's targets index them)."""

    def __init__(self, model) -> None:
        super().__init__()
        self.model = model

    def forward(self, x):
        output = self.model(x)
        return output[0] if isinstance(output, (tuple, list)) else output


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--set", nargs="*", default=[], help="config overrides (data.root=…, paths.…)")
    p.add_argument("--captum-concepts", type=int, default=2)
    p.add_argument("--captum-random", type=int, default=10)
    p.add_argument("--no-scaling", action="store_true", help="time only the default run and Captum")
    args = p.parse_args()
    setup(args)
    cfg = compose(args.work, "task=tcav", *args.set)
    concepts, activations = planted_stores(cfg)
    task = hydra.utils.instantiate(cfg.task)
    tested = task.tested_concepts(concepts)
    repeats, random = int(cfg.task.repeats), int(cfg.task.random_concepts)
    with tempfile.TemporaryDirectory() as first, tempfile.TemporaryDirectory() as second:
        base = ours(cfg, concepts, activations, Path(first), ablation=False)
        with_ablation = every = doubled = {"cavs": float("nan"), "tcav": float("nan")}
        if not args.no_scaling:
            with_ablation = ours(cfg, concepts, activations, Path(first))  # same CAVs
            every = ours(cfg, concepts, activations, Path(first), ablation=False, images="all")
            doubled = ours(cfg, concepts, activations, Path(second), ablation=False,
                           repeats=2 * repeats, random_concepts=2 * random)  # fmt: skip
    seconds, sets, classes, fixed = captum_run(
        task, concepts, tested, args.captum_concepts, args.captum_random, repeats
    )
    all_sets = len(tested) * repeats + random
    captum_full = (seconds - classes * fixed) / sets * all_sets + classes * fixed
    net2vec = base["cavs"] + base["tcav"]
    record = {
        "machine": machine(),
        "concepts": len(tested), "classes": classes, "repeats": repeats, "random": random,
        "net2vec_s": round(net2vec, 2), "stages": {k: round(v, 2) for k, v in base.items()},
        "ablation_s": round(with_ablation["tcav"] - base["tcav"], 2),
        "doubled_vectors_cavs_s": round(doubled["cavs"], 2),
        "doubled_vectors_tcav_s": round(doubled["tcav"], 2),
        "images_all_tcav_s": round(every["tcav"], 2),
        "captum_measured_s": round(seconds, 2), "captum_measured_sets": sets,
        "captum_fixed_per_class_s": round(fixed, 3),
        "captum_extrapolated_s": round(captum_full, 1), "speedup": round(captum_full / net2vec, 1),
    }  # fmt: skip
    emit("tcav", record, [
        f"net2vec task=tcav: {len(tested)} concepts × {repeats} repeats + {random} random "
        f"controls, {classes} classes: {net2vec:.1f} s (CAVs {base['cavs']:.1f} s, pass "
        f"{base['tcav']:.1f} s); ablation adds {record['ablation_s']:.1f} s",
        f"Captum TCAV: {sets} sets measured in {seconds:.1f} s -> {all_sets} sets "
        f"extrapolated {captum_full:.0f} s; speed ratio {captum_full / net2vec:.0f}x",
        f"scaling: vectors ×2 -> CAVs {doubled['cavs']:.1f} s, pass {doubled['tcav']:.1f} s; "
        f"images=all ({classes} classes per image) -> pass {every['tcav']:.1f} s",
    ])  # fmt: skip


if __name__ == "__main__":
    main()
