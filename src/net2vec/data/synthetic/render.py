"""Drawing one synthetic image: its label maps at mask resolution, then the picture from them.

Every image is drawn from its own generator seeded by (seed, image index), so ``render`` (or
``ground_truth`` for a generated set) redraws any image's exact label maps.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from net2vec.data.synthetic.catalogue import Catalogue, build_catalogue
from net2vec.data.synthetic.concepts import (
    CLOSEUP_IMAGE_FRACTION,
    COLORS,
    MATERIALS,
    SCENE_IMAGE_FRACTION,
    STUFF,
    VAL_FRACTION,
)


@dataclass
class SyntheticImage:
    """One drawn image: its split, image-level labels and label maps at mask resolution."""

    name: str
    split: str
    scene: int | None
    texture: int | None
    maps: dict[str, np.ndarray]  # plane -> (m, m) int32 global label numbers (0 = none)
    image: np.ndarray | None = None  # (2m, 2m, 3) uint8


PLANES = {
    "color": ("color",),
    "object": ("object",),
    "part": ("part_1", "part_2"),
    "material": ("material",),
}


def _zipf(n: int, exponent: float = 1.0) -> np.ndarray:
    weights = 1.0 / np.arange(1, n + 1) ** exponent
    return weights / weights.sum()


def _shape(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Whether normalised coordinates (u across, v down, both in [0, 1]) fall inside the shape."""
    x, y = 2 * u - 1, 2 * v - 1
    inside = {
        "rect": np.ones_like(x, bool),
        "ellipse": x**2 + y**2 <= 1,
        "tri": np.abs(x) <= v,
        "trap": np.abs(x) <= 0.5 + 0.5 * v,
        "itrap": np.abs(x) <= 1 - 0.4 * v,
        "diamond": np.abs(x) + np.abs(y) <= 1,
    }[shape]
    return inside & (u >= 0) & (u <= 1) & (v >= 0) & (v <= 1)


def _box_mask(
    m: int, box: tuple[float, float, float, float]
) -> tuple[tuple[slice, slice], np.ndarray, np.ndarray] | None:
    """Pixel window of a box (x0, y0, x1, y1) in mask pixels and the normalised centre coordinates."""
    x0, y0, x1, y1 = box
    r0, r1 = max(0, int(np.floor(y0))), min(m, int(np.ceil(y1)))
    c0, c1 = max(0, int(np.floor(x0))), min(m, int(np.ceil(x1)))
    if r1 <= r0 or c1 <= c0 or x1 - x0 <= 0 or y1 - y0 <= 0:
        return None
    v = ((np.arange(r0, r1) + 0.5 - y0) / (y1 - y0))[:, None]
    u = ((np.arange(c0, c1) + 0.5 - x0) / (x1 - x0))[None, :]
    return (slice(r0, r1), slice(c0, c1)), u, v


def _draw_object(cat: Catalogue, maps: dict, name: str, box: tuple, colour: str) -> None:
    """Draw one object instance (parts on plane 1, sub-parts on plane 2 inside them)."""
    spec = cat.objects[name]
    left, top, width, height = box
    m = maps["color"].shape[0]
    drawn = np.zeros((m, m), bool)
    for part, shape, (bx0, by0, bx1, by1), part_colour, material, plane in sorted(
        spec[5], key=lambda p: p[5]
    ):
        window = _box_mask(
            m, (left + bx0 * width, top + by0 * height, left + bx1 * width, top + by1 * height)
        )
        if window is None:
            continue
        where, u, v = window
        hit = _shape(shape, u, v)
        if plane == 1:
            drawn[where] |= hit
            maps["part_1"][where][hit] = cat.numbers[part]
            maps["part_2"][where][hit] = 0
        else:
            hit &= drawn[where]
            maps["part_2"][where][hit] = cat.numbers[part]
        maps["object"][where][hit] = cat.numbers[name]
        maps["color"][where][hit] = cat.numbers[part_colour or colour]
        chosen = material or spec[4]
        maps["material"][where][hit] = cat.numbers[chosen] if chosen else 0


def _place(
    rng: np.random.Generator, spec: tuple, m: int, horizon: int
) -> tuple[float, float, float, float]:
    """(left, top, width, height) of an instance: grounded ones grow towards the viewer."""
    region, widths, aspect = spec[0], spec[1], spec[2]
    width = rng.uniform(*widths) * m
    if region == "ground":
        bottom = rng.uniform(horizon + 0.25 * (m - horizon), m * 1.05)
        width *= 0.6 + 0.5 * (bottom - horizon) / max(m - horizon, 1)
        top = bottom - width * aspect
    else:
        top = rng.uniform(0.03 * m, max(0.04 * m, horizon - 0.9 * width * aspect))
    left = rng.uniform(-0.1 * width, m - 0.9 * width)
    return left, top, width, width * aspect


def _draw_scene(cat: Catalogue, rng: np.random.Generator, maps: dict, scene: str) -> None:
    """Background stuff above/below a horizon, then the scene's objects, far to near."""
    upper, lower, objects = cat.scenes[scene]
    m = maps["color"].shape[0]
    horizon = int(m * rng.uniform(0.35, 0.55))
    for stuff, rows in ((upper, slice(0, horizon)), (lower, slice(horizon, m))):
        colours, material = STUFF[stuff]
        maps["object"][rows] = cat.numbers[stuff]
        maps["color"][rows] = cat.numbers[str(rng.choice(colours.split()))]
        maps["material"][rows] = cat.numbers[material] if material else 0
    instances = []
    for name, probability, tries in objects:
        for _ in range(tries):
            if rng.random() < probability:
                spec = cat.objects[name]
                box = _place(rng, spec, m, horizon)
                depth = box[1] + box[3] if spec[0] == "ground" else -1.0
                instances.append((depth, name, box, str(rng.choice(spec[3].split()))))
    for _, name, box, colour in sorted(instances, key=lambda item: item[0]):
        _draw_object(cat, maps, name, box, colour)


def _draw_closeup(cat: Catalogue, rng: np.random.Generator, maps: dict, name: str) -> None:
    """One object filling most of the frame (as in part-annotated photographs), over its stuff."""
    spec = cat.objects[name]
    m = maps["color"].shape[0]
    upper, lower = (
        ("sky", "grass")
        if spec[0] == "sky"
        else (("wall", "floor") if rng.random() < 0.5 else ("sky", "road"))
    )
    horizon = int(m * rng.uniform(0.4, 0.7))
    for stuff, rows in ((upper, slice(0, horizon)), (lower, slice(horizon, m))):
        colours, material = STUFF[stuff]
        maps["object"][rows] = cat.numbers[stuff]
        maps["color"][rows] = cat.numbers[str(rng.choice(colours.split()))]
        maps["material"][rows] = cat.numbers[material] if material else 0
    aspect = spec[2]
    width = (
        m * rng.uniform(0.8, 1.3) / max(aspect, 1.0)
    )  # the longer side: 0.8-1.3 frames (cropped)
    height = width * aspect
    left = (m - width) / 2 + rng.uniform(-0.15, 0.15) * m
    top = (m - height) / 2 + rng.uniform(-0.15, 0.15) * m
    _draw_object(cat, maps, name, (left, top, width, height), str(rng.choice(spec[3].split())))


def _texture_pattern(spec: tuple, m: int, rng: np.random.Generator) -> np.ndarray:
    """A two-valued pattern of the texture at mask resolution, random phase."""
    y, x = np.mgrid[0:m, 0:m] + rng.integers(0, 12, size=2)[:, None, None]
    kind = spec[0]
    if kind == "angled":
        return ((x * np.cos(spec[1]) + y * np.sin(spec[1])) // (spec[2] / 2)) % 2 == 0
    if kind in ("sprinkled", "blotchy"):
        cells = 1 if kind == "sprinkled" else 4
        field_ = rng.random((m // cells + 1, m // cells + 1)) < (0.12 if cells == 1 else 0.5)
        return np.kron(field_, np.ones((cells, cells), bool))[:m, :m]
    r, theta = np.hypot(y - y.mean(), x - x.mean()), np.arctan2(y - y.mean(), x - x.mean())
    return {
        "striped": (y // 3) % 2 == 0,
        "banded": (x // 5) % 2 == 0,
        "lined": y % 5 == 0,
        "zigzagged": ((y + np.abs(x % 8 - 4)) // 3) % 2 == 0,
        "chequered": (y // 4 + x // 4) % 2 == 0,
        "dotted": (y % 6 - 3) ** 2 + (x % 6 - 3) ** 2 <= 2,
        "polka-dotted": (y % 12 - 6) ** 2 + (x % 12 - 6) ** 2 <= 12,
        "grid": (y % 6 == 0) | (x % 6 == 0),
        "crosshatched": ((x + y) % 6 == 0) | ((x - y) % 6 == 0),
        "wavy": ((y + 2 * np.sin(x / 2.5)) // 3) % 2 == 0,
        "spiralled": np.floor(r / 2.5 + 2 * theta / np.pi) % 2 == 0,
    }[kind]


def _material_patterns(size: int, materials: list[str]) -> np.ndarray:
    """(1 + len(materials), size, size) luminance factors: index 0 = no material."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    noise = np.random.default_rng(1234).random((size, size)).astype(np.float32)
    blotch = np.kron(
        np.random.default_rng(99).random((size // 2 + 1, size // 2 + 1)), np.ones((2, 2))
    )[:size, :size]
    table = {
        "wood": 1 + 0.18 * np.sin(2 * np.pi * (x + 3 * np.sin(y / 6)) / 5),
        "metal": 1.1 + 0.12 * np.sin(2 * np.pi * y / 3),
        "glass": 1 + 0.3 * ((x + y) % 8 < 2),
        "fabric": 1 - 0.18 * ((x + y) % 2),
        "plastic": np.full_like(x, 1.15),
        "stone": 0.8 + 0.4 * noise,
        "rubber": 0.8 + 0.6 * ((x % 4 == 0) & (y % 4 == 0)),
        "paper": 1 - 0.15 * (y % 4 == 0),
        "fur": 1 + 0.18 * np.sin(2 * np.pi * (x + 2 * y) / 3),
        "brick": 1 - 0.3 * ((y % 6 == 0) | ((x + 6 * ((y // 6) % 2)) % 12 == 0)),
        "tile": 1 - 0.28 * ((y % 8 == 0) | (x % 8 == 0)),
        "skin": 1.05 + 0.04 * noise,
        "foliage": 0.75 + 0.5 * blotch,
        "ceramic": 1.1 + 0.1 * np.sin(2 * np.pi * x / 10),
        "water": 1 + 0.18 * np.sin(2 * np.pi * (y + 2 * np.sin(x / 4)) / 6),
        "leather": 0.9 + 0.2 * noise * (x % 3 == 0),
    }
    return np.stack([np.ones_like(x)] + [table[name] for name in materials]).astype(np.float32)


_LOOKUPS: dict = {}


def _lookups(cat: Catalogue, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Colour table by label number, material index by label number, material patterns."""
    key = (id(cat), size)
    if key not in _LOOKUPS:
        top = max(cat.numbers.values()) + 1
        rgb = np.zeros((top, 3), np.float32)
        for name, value in COLORS.items():
            rgb[cat.numbers[name]] = value
        material_index = np.zeros(top, np.int64)
        for k, name in enumerate(MATERIALS):
            material_index[cat.numbers[name]] = k + 1
        _LOOKUPS.clear()
        _LOOKUPS[key] = (rgb, material_index, _material_patterns(size, list(MATERIALS)), cat)
    return _LOOKUPS[key][:3]


def _paint(cat: Catalogue, maps: dict, rng: np.random.Generator) -> np.ndarray:
    """The RGB image (2m x 2m): region colours times material patterns, global brightness, noise."""
    size = 2 * maps["color"].shape[0]
    rgb, material_index, patterns = _lookups(cat, size)
    colour = np.repeat(np.repeat(maps["color"], 2, 0), 2, 1)
    material = np.repeat(np.repeat(material_index[maps["material"]], 2, 0), 2, 1)
    factor = np.take_along_axis(patterns, material[None], 0)[0] * rng.uniform(0.9, 1.1)
    image = rgb[colour] * factor[..., None] + rng.normal(0, 5, (size, size, 3))
    return np.clip(image, 0, 255).astype(np.uint8)


def render(cat: Catalogue, seed: int, index: int, size: int, paint: bool = True) -> SyntheticImage:
    """Draw image `index` of the set (deterministic in seed and index)."""
    if size % 2 or size < 16:
        raise ValueError(f"synthetic image size {size}: must be even and >= 16")
    rng = np.random.default_rng([seed, index])
    m = size // 2
    maps = {plane: np.zeros((m, m), np.int32) for planes in PLANES.values() for plane in planes}
    split = "val" if rng.random() < VAL_FRACTION else "train"
    scene = texture = None
    kind = rng.random()
    if kind < SCENE_IMAGE_FRACTION:
        names = list(cat.scenes)
        name = names[rng.choice(len(names), p=_zipf(len(names)))]
        _draw_scene(cat, rng, maps, name)
        scene = cat.numbers[name]
    elif kind < SCENE_IMAGE_FRACTION + CLOSEUP_IMAGE_FRACTION:
        names = list(cat.objects)
        _draw_closeup(cat, rng, maps, names[rng.integers(len(names))])
    else:
        names = list(cat.textures)
        name = names[rng.choice(len(names), p=_zipf(len(names), 0.7))]
        first, second = rng.choice(list(COLORS), size=2, replace=False)
        pattern = _texture_pattern(cat.textures[name], m, rng)
        maps["color"][:] = np.where(pattern, cat.numbers[str(first)], cat.numbers[str(second)])
        texture = cat.numbers[name]
    image = _paint(cat, maps, rng) if paint else None
    return SyntheticImage(f"synth_{index:06d}", split, scene, texture, maps, image)


def ground_truth(root: str | Path, index: int) -> SyntheticImage:
    """Redraw image `index` of a generated set (label maps only) from its synthetic.json."""
    params = json.loads((Path(root) / "synthetic.json").read_text())
    cat = build_catalogue(params["concepts"], params["seed"])
    return render(cat, params["seed"], index, params["size"], paint=False)
