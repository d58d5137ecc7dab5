"""Unit ablation (Bau et al. 2020, PNAS; docs/method.md §7): are the units tied to a class needed for it?

For SynthNet's ``scene`` head (softmax over the dataset's scene concepts, in concept-store
order) and one scene class s:

1. *Tied concepts*: the pixel-level concepts most co-present with s, ranked by
   P(c | image of s) − P(c | other scene images) over the train images (the objects and stuff
   the synthetic catalogue puts into that scene); the top ``tied`` are kept.
2. Each conv5 unit's importance is its largest NetDissect IoU with a tied concept.
3. For each n, the n most important units are zeroed (forward hook on the layer's output),
   and, separately, the n least important; on the chosen split's scene images we measure the
   balanced binary accuracy of s (mean of the recall of s and of not-s, prediction = argmax)
   and the all-class top-1 accuracy (and, as a smoother signal, the mean softmax probability
   of s on its own images).
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

import numpy as np
import torch

from net2vec.experiments.common import ExperimentError, Table, pyplot, save_figure
from net2vec.features.extract import load_image, normalise

log = logging.getLogger(__name__)


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
def scene_probabilities(
    model: torch.nn.Module, images: torch.Tensor, batch_size: int = 64
) -> np.ndarray:
    """(n, S) softmax of the scene head (the first output) for uint8 images (n, 3, H, W)."""
    out = []
    for start in range(0, len(images), batch_size):
        logits = model(normalise(images[start : start + batch_size]))
        logits = logits[0] if isinstance(logits, (tuple, list)) else logits
        out.append(logits.softmax(1).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 1), np.float32)


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


def ablation_test(ctx, concepts, result, params) -> tuple[Table, dict]:
    """Accuracy table as n units (most vs least tied to the scene) are zeroed in ``params.layer``."""
    scenes, target = scene_targets(concepts)
    split_code = {"train": 0, "val": 1}.get(str(params.get("split", "val")))
    split = (
        np.ones(len(target), bool)
        if split_code is None
        else np.asarray(concepts.split) == split_code
    )
    scene_class = choose_scene(
        target, split, np.asarray(concepts.names)[scenes], params.get("scene")
    )
    tied = tied_concepts(concepts, target, scene_class, int(params.get("tied", 3)))
    importance = unit_importance(result.iou, tied)
    order = np.argsort(-importance, kind="stable")
    model = ctx.model(concepts.attrs["dataset_root"])
    layer = dict(model.named_modules())[
        ctx.network.resolve_layer(str(params.get("layer", ctx.layer)), model)
    ]
    rows = np.flatnonzero(split & (target >= 0))
    images, y = load_split_images(concepts, rows, int(ctx.network.input_size)), target[rows]
    table = []
    for n in [0, *[int(s) for s in params.get("sizes", [1, 2, 4, 8, 16, 32])]]:
        n = min(n, len(order))
        for which, units in (("most", order[:n]), ("least", order[::-1][:n])):
            if n == 0 and which == "least":
                continue
            with ablated(layer, units):
                probabilities = scene_probabilities(model, images)
            balanced, overall = class_accuracies(probabilities.argmax(1), y, scene_class)
            table.append(
                [
                    "none" if n == 0 else which,
                    n,
                    balanced,
                    overall,
                    float(probabilities[y == scene_class, scene_class].mean()),
                ]
            )
    info = {
        "scene": str(concepts.names[scenes[scene_class]]),
        "scene_class": scene_class,
        "tied_concepts": [str(concepts.names[c]) for c in tied],
        "images": int(len(rows)),
        "top_units": [int(u) for u in order[:8]],
        "top_importance": [float(importance[u]) for u in order[:8]],
    }
    return Table(
        ["removed", "units", "balanced_accuracy", "all_class_accuracy", "class_probability"], table
    ), info


def plot_ablation(table: Table, info: dict, path: Path) -> None:
    """Balanced scene accuracy and all-class accuracy vs number of units removed."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    rows = table.rows
    base = [r for r in rows if r[0] == "none"]
    for ax, column, title in (
        (axes[0], 2, f"balanced accuracy: {info['scene']}"),
        (axes[1], 3, "all-class accuracy"),
    ):
        for which, style in (("most", "o-"), ("least", "s--")):
            picked = base + [r for r in rows if r[0] == which]
            ax.plot(
                [max(r[1], 0.5) for r in picked],
                [r[column] for r in picked],
                style,
                label=f"{which} tied removed",
            )
        ax.set_xscale("log", base=2)
        ax.set_xlabel("units removed (0 shown at 0.5)")
        ax.set_title(title)
        ax.legend()
    save_figure(fig, path)


def run_ablation(ctx, concepts, result, out_dir: Path, params) -> dict:
    """The ablation table and figure into `out_dir`."""
    table, info = ablation_test(ctx, concepts, result, params)
    table.to_csv(out_dir / "ablation.csv")
    plot_ablation(table, info, out_dir / "ablation.png")
    return {**info, "rows": table.rows}
