"""Pictures drawn from a run's stores: the dataset's images, the layer's stored maps, the masks.

No network is rerun: a unit's map is read from the activation store, resized to the picture
(bilinear, half-pixel centres as in the tally) and thresholded at the unit's T_k; ground-truth
masks come from the concept store. :class:`StoredImages` reads them; the drawing helpers return
PIL images (tiles, strips, grids) that the report saves and a W&B logger can log as they are.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from net2vec.data.concept_store import ConceptStore
from net2vec.features.store import ActivationStore
from net2vec.probes.upsample import upsample

OUTLINE = (255, 230, 0)
TRUTH = (230, 0, 230)
GAP = 3


class ImagesError(ValueError):
    """A run whose stores or images cannot be read (one line)."""


class StoredImages:
    """The images, stored maps and masks behind a run (paths from its summary.json ``stores``)."""

    def __init__(self, stores: dict, every_label: bool = False) -> None:
        try:
            self.acts = ActivationStore(stores["activation_store"])
            self.concepts = ConceptStore(stores["concept_store"], every_label=every_label)
        except (KeyError, OSError, ValueError) as error:
            raise ImagesError(f"cannot open the run's stores ({error})") from None
        self.root = Path(str(self.concepts.attrs["dataset_root"]))
        self.position = {str(n): c for c, n in enumerate(self.concepts.names)}

    def image(self, row: int, size: int) -> np.ndarray:
        """(size, size, 3) uint8 RGB of dataset row `row`."""
        path = self.root / "images" / str(self.concepts.images[row])
        try:
            with Image.open(path) as image:
                return np.asarray(image.convert("RGB").resize((size, size), Image.BILINEAR))
        except OSError as error:
            raise ImagesError(f"{path}: cannot read the image ({error})") from None

    def unit_mask(self, row: int, unit: int, size: int) -> np.ndarray:
        """(size, size) bool: unit's stored map resized to the picture, above its threshold."""
        raw = torch.from_numpy(self.acts.activations([row])[0, unit]).double()
        up = upsample(raw, (size, size), align_corners=False).numpy()
        return up > float(self.acts.thresholds[unit])

    def filter_mask(self, row: int, unit: int, size: int, align_corners: bool = True) -> np.ndarray:
        """(size, size) bool: the thresholded map I(A_k > T_k) resized, > 0.5 (the probes' rule)."""
        binary = torch.from_numpy(np.asarray(self.acts.thresholded([row])[0, unit], np.float64))
        return upsample(binary, (size, size), align_corners).numpy() > 0.5 + 1e-6

    def truth(self, row: int, concept: str, size: int) -> np.ndarray:
        """(size, size) bool ground truth of `concept` in `row` (image-level: everything)."""
        c = self.position.get(str(concept))
        if c is None:
            return np.zeros((size, size), bool)
        lo, hi = self.concepts.pair_offsets[row], self.concepts.pair_offsets[row + 1]
        hit = np.flatnonzero(self.concepts.pair_concept[lo:hi] == c)
        if len(hit):
            mask = self.concepts.masks(np.array([lo + hit[0]]))[0]
            return resize_mask(mask, size)
        return np.full((size, size), bool(self.concepts.presence[row, c]))


def resize_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """Nearest-neighbour resize of a bool mask to (size, size)."""
    image = Image.fromarray(mask.astype(np.uint8) * 255).resize((size, size), Image.NEAREST)
    return np.asarray(image) > 127


def outline(mask: np.ndarray, width: int = 2) -> np.ndarray:
    """Pixels of `mask` within `width` of its border (4-neighbour erosion)."""
    inner = mask.copy()
    for _ in range(width):
        padded = np.pad(inner, 1)
        inner = (
            padded[1:-1, 1:-1] & padded[:-2, 1:-1] & padded[2:, 1:-1]
            & padded[1:-1, :-2] & padded[1:-1, 2:]
        )  # fmt: skip
    return mask & ~inner


def highlight(image: np.ndarray, mask: np.ndarray, colour=OUTLINE, dim: float = 0.45) -> np.ndarray:
    """The image dimmed outside `mask`, with the mask's outline drawn in `colour`."""
    out = image.astype(np.float32) * np.where(mask, 1.0, dim)[..., None]
    out[outline(mask)] = colour
    return out.astype(np.uint8)


def overlay(image: np.ndarray, mask: np.ndarray, colour, alpha: float = 0.55) -> np.ndarray:
    """The image with `mask` filled in `colour` (alpha blend) and outlined."""
    out = image.astype(np.float32)
    out[mask] = (1 - alpha) * out[mask] + alpha * np.array(colour, np.float32)
    out[outline(mask, 1)] = colour
    return out.astype(np.uint8)


def font(size: int = 13):
    return ImageFont.load_default(size=size)


def strip(tiles: list[np.ndarray], title: str, captions: list[str] = ()) -> Image.Image:
    """Tiles side by side under a title line (and a caption under each tile when given)."""
    size = tiles[0].shape[0] if tiles else 64
    head, foot = 20, 16 if captions else 0
    width = max(len(tiles), 1) * (size + GAP) - GAP
    canvas = Image.new("RGB", (width, head + size + foot), "white")
    draw = ImageDraw.Draw(canvas)
    draw.text((2, 3), title, fill="black", font=font(13))
    for j, tile in enumerate(tiles):
        canvas.paste(Image.fromarray(tile), (j * (size + GAP), head))
        if j < len(captions):
            draw.text(
                (j * (size + GAP) + 2, head + size + 2), captions[j], fill="black", font=font(11)
            )
    return canvas


def grid(rows: list[Image.Image]) -> Image.Image:
    """Strips stacked vertically."""
    width = max(r.width for r in rows)
    canvas = Image.new("RGB", (width, sum(r.height + GAP for r in rows)), "white")
    y = 0
    for r in rows:
        canvas.paste(r, (0, y))
        y += r.height + GAP
    return canvas
