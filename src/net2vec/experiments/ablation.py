"""Unit ablation (Bau et al. 2020, PNAS; docs/method.md §7): what do a concept's units do for
the network's own predictions?

For a concept c (``params.concepts``, default: the ``count`` concepts detected by the most units
of the layer), the layer's units are ranked by their NetDissect IoU with c. For each n the n
most important units are zeroed (forward hook on the layer's output), and, separately, the n
least important; on the probe images of the chosen split the network's class output (its first
output, softmax) is compared with the unablated one:

- ``agreement``: the fraction of images whose top-1 class is unchanged;
- ``top_class_drop``: the mean drop of the probability of the unablated top class.

This holds for any classifier (ImageNet or Places classes alike). Where the network's classes
*are* the dataset's scenes (SynthNet's scene head) the scene study runs as well, on one group
``scene:<s>``: the units are ranked by their largest IoU with the ``tied`` concepts most
co-present with scene s, and the table adds the balanced binary accuracy of s, the all-class
scene accuracy and the mean probability of s on its own images. A network without a class
output (or without a model) ends with a one-line error.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

import numpy as np
import torch

from net2vec.experiments.common import ExperimentError, Table, pyplot, save_figure
from net2vec.features.extract import load_image, normalise
from net2vec.features.synthnet import SynthNet

log = logging.getLogger(__name__)
SCENE_COLUMNS = ["balanced_accuracy", "all_class_accuracy", "class_probability"]


def scene_targets(concepts) -> tuple[np.ndarray, np.ndarray]:
    """(scene concept indices (the head's classes, in order), (N,) target class or -1)."""
    scenes = np.flatnonzero(np.asarray(concepts.categories).astype(str) == "scene")
    if len(scenes) == 0:
        raise ExperimentError("the dataset has no scene concepts: unit ablation needs a scene head")
    presence = np.asarray(concepts.presence)[:, scenes]
    return scenes, np.where(presence.any(1), presence.argmax(1), -1)


def tied_concepts(concepts, target: np.ndarray, scene_class: int, count: int = 3) -> np.ndarray:
    """The `count` pixel-level concepts most over-represented in train images of `scene_class`."""
    train = (np.asarray(concepts.split) == 0) & (target >= 0)
    inside, outside = train & (target == scene_class), train & (target != scene_class)
    if not inside.any() or not outside.any():
        raise ExperimentError(f"scene class {scene_class} needs train images inside and outside it")
    presence = np.asarray(concepts.presence, np.float64)
    lift = presence[inside].mean(0) - presence[outside].mean(0)
    lift[~np.asarray(concepts.pixel_level, bool)] = -np.inf
    return np.argsort(-lift, kind="stable")[:count]


def unit_importance(iou: np.ndarray, tied: np.ndarray) -> np.ndarray:
    """(K,) largest NetDissect IoU of each unit with any tied concept."""
    return np.asarray(iou)[:, tied].max(1)


@contextlib.contextmanager
def ablated(module: torch.nn.Module, units):
    """Zero channels `units` of `module`'s output while the context is open."""
    index = torch.from_numpy(np.array(units, dtype=np.int64))

    def hook(mod, inputs, output):
        output = output.clone()
        output[:, index] = 0
        return output

    handle = module.register_forward_hook(hook) if len(index) else None
    try:
        yield
    finally:
        if handle is not None:
            handle.remove()


@torch.no_grad()
def class_probabilities(model, images: torch.Tensor, mean, std, batch_size: int = 64):
    """(n, classes) softmax of the network's class output (its first output) for uint8 images."""
    out = []
    for start in range(0, len(images), batch_size):
        logits = model(normalise(images[start : start + batch_size], mean, std))
        logits = logits[0] if isinstance(logits, (tuple, list)) else logits
        if not torch.is_tensor(logits) or logits.dim() != 2 or logits.shape[1] < 2:
            shape = tuple(logits.shape) if torch.is_tensor(logits) else type(logits).__name__
            raise ExperimentError(
                f"the network's output is {shape}, not class scores (n, classes): unit ablation "
                "needs a classifier"
            )
        out.append(logits.softmax(1).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 2), np.float32)


def prediction_change(base: np.ndarray, probs: np.ndarray) -> tuple[float, float]:
    """(top-1 agreement with the unablated network, mean drop of its top class's probability)."""
    top = base.argmax(1)
    rows = np.arange(len(top))
    return float((probs.argmax(1) == top).mean()), float(
        (base[rows, top] - probs[rows, top]).mean()
    )


def class_accuracies(pred: np.ndarray, target: np.ndarray, scene_class: int) -> tuple[float, float]:
    """(balanced binary accuracy of `scene_class`, all-class accuracy)."""
    positive = target == scene_class
    hit = pred == scene_class
    recall = [
        float((hit[positive]).mean()) if positive.any() else float("nan"),
        float((~hit[~positive]).mean()) if (~positive).any() else float("nan"),
    ]
    return float(np.nanmean(recall)), float((pred == target).mean())


def load_split_images(concepts, rows: np.ndarray, size: int) -> torch.Tensor:
    """(n, 3, size, size) uint8 probe images of dataset `rows`."""
    root = Path(str(concepts.attrs["dataset_root"]))
    names = np.asarray(concepts.images)[rows]
    if len(names) == 0:
        return torch.zeros((0, 3, size, size), dtype=torch.uint8)
    return torch.stack([load_image(root / "images" / str(name), size) for name in names])


def choose_scene(target: np.ndarray, split: np.ndarray, scene_names, scene) -> int:
    """The head class of `scene` (a name), or the most frequent scene of the evaluation split."""
    names = [str(n) for n in scene_names]
    if scene is not None:
        if str(scene) not in names:
            raise ExperimentError(
                f"experiments.ablation.scene={scene!r}: not a scene concept ({', '.join(names[:12])})"
            )
        return names.index(str(scene))
    counts = np.bincount(target[(target >= 0) & split], minlength=len(names))
    return int(np.argmax(counts))


def scene_head(model, concepts) -> bool:
    """Whether the network's classes are the dataset's scene concepts (SynthNet's scene head)."""
    scenes = int((np.asarray(concepts.categories).astype(str) == "scene").sum())
    return isinstance(model, SynthNet) and scenes > 1 and model.scene.out_features == scenes


def concept_groups(concepts, result, names, count: int) -> list[tuple[str, np.ndarray]]:
    """(group name, (K,) unit importance) per concept: IoU with it; default: the `count`
    concepts that are the top label of the most units."""
    all_names = [str(n) for n in concepts.names]
    if names:
        missing = [n for n in names if str(n) not in all_names]
        if missing:
            raise ExperimentError(f"experiments.ablation.concepts: {missing[0]!r} is not a concept")
        chosen = [all_names.index(str(n)) for n in names]
    else:
        units = np.bincount(result.top_concept, minlength=len(all_names))
        chosen = [int(c) for c in np.argsort(-units, kind="stable")[:count] if units[c] > 0]
    return [(all_names[c], np.asarray(result.iou)[:, c]) for c in chosen]


def scene_group(concepts, result, split, params) -> tuple[tuple[str, np.ndarray], dict]:
    """The scene study's group (importance: largest IoU with the tied concepts) and its facts."""
    scenes, target = scene_targets(concepts)
    names = np.asarray(concepts.names)[scenes]
    scene_class = choose_scene(target, split, names, params.get("scene"))
    tied = tied_concepts(concepts, target, scene_class, int(params.get("tied", 3)))
    info = {
        "scene": str(names[scene_class]),
        "scene_class": scene_class,
        "tied_concepts": [str(concepts.names[c]) for c in tied],
        "target": target,
    }
    return (f"scene:{names[scene_class]}", unit_importance(result.iou, tied)), info


def sweep_rows(group, importance, measure, sizes) -> list[list]:
    """Rows of one group: none, then the n most and n least important units removed."""
    order = np.argsort(-importance, kind="stable")
    rows = [[group, "none", 0, *measure([])]]
    for n in sizes:
        n = min(int(n), len(order))
        for which, units in (("most", order[:n]), ("least", order[::-1][:n])):
            rows.append([group, which, n, *measure(units)])
    return rows


def ablation_test(ctx, concepts, result, params) -> tuple[Table, dict]:
    """Prediction changes as n units (most vs least tied to each concept) are zeroed in the layer."""
    split_code = {"train": 0, "val": 1}.get(str(params.get("split", "val")))
    split = (
        np.ones(concepts.num_images, bool) if split_code is None else concepts.split == split_code
    )
    model = ctx.model(concepts.attrs["dataset_root"])
    layer = dict(model.named_modules())[
        ctx.network.resolve_layer(str(params.get("layer", ctx.layer)), model)
    ]
    groups = concept_groups(concepts, result, params.get("concepts"), int(params.get("count", 3)))
    info: dict = {}
    scene = scene_head(model, concepts)
    if scene:
        scene_importance, info = scene_group(concepts, result, split, params)
        groups = [scene_importance] + (groups if params.get("concepts") else [])
    target = info.pop("target", None)
    rows = np.flatnonzero(split & (target >= 0)) if scene else np.flatnonzero(split)
    images = load_split_images(concepts, rows, int(ctx.network.input_size))
    mean, std = ctx.network.mean, ctx.network.std
    base = class_probabilities(model, images, mean, std)

    def measure(units) -> list[float]:
        with ablated(layer, units):
            probs = class_probabilities(model, images, mean, std)
        values = list(prediction_change(base, probs))
        if scene:
            y, s = target[rows], info["scene_class"]
            values += [*class_accuracies(probs.argmax(1), y, s), float(probs[y == s, s].mean())]
        return values

    table = []
    for group, importance in groups:
        table += sweep_rows(group, importance, measure, params.get("sizes", [1, 2, 4, 8, 16, 32]))
        info.setdefault("top_units", {})[group] = [
            int(u) for u in np.argsort(-importance, kind="stable")[:8]
        ]
    info.update(
        {"images": int(len(rows)), "groups": [g for g, _ in groups], "scene_head": bool(scene)}
    )
    columns = ["group", "removed", "units", "agreement", "top_class_drop"]
    return Table(columns + (SCENE_COLUMNS if scene else []), table), info


def plot_ablation(table: Table, info: dict, path: Path) -> None:
    """Agreement and top-class drop (and, with a scene head, balanced accuracy) vs units removed."""
    plt = pyplot()
    panels = ["agreement", "top_class_drop"] + (
        ["balanced_accuracy"] if info.get("scene_head") else []
    )
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4))
    rows = [dict(zip(table.columns, r)) for r in table.rows]
    for ax, column in zip(axes, panels):
        for group in info["groups"]:
            base = [r for r in rows if r["group"] == group and r["removed"] == "none"]
            for which, style in (("most", "o-"), ("least", "s--")):
                picked = base + [r for r in rows if r["group"] == group and r["removed"] == which]
                ax.plot(
                    [max(r["units"], 0.5) for r in picked],
                    [r[column] for r in picked],
                    style,
                    label=f"{group}: {which}",
                )
        ax.set_xscale("log", base=2)
        ax.set_xlabel("units removed (0 shown at 0.5)")
        ax.set_title(column.replace("_", " "))
    axes[0].legend(fontsize=7)
    save_figure(fig, path)


def run_ablation(ctx, concepts, result, out_dir: Path, params) -> dict:
    """The ablation table and figure into `out_dir`."""
    table, info = ablation_test(ctx, concepts, result, params)
    table.to_csv(out_dir / "ablation.csv")
    plot_ablation(table, info, out_dir / "ablation.png")
    return {**info, "rows": table.rows}
