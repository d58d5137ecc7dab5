"""A deterministic synthetic probe set in the BRODEN on-disk format.

Images are drawn from a catalogue of concepts in the six BRODEN categories:

- scene images (40 %): a scene (image-level) fixes the background stuff (sky/wall above,
  road/floor/grass/water below) and which objects appear, with scene-specific probabilities;
- close-up images (40 %): one object, uniformly drawn, fills the frame (its longer side 0.8-1.3
  frames, so often cropped) over its stuff, as in the part-annotated photographs of BRODEN
  (Pascal-Part): parts are large enough to be seen at a stride-16 layer's resolution (no scene);
- objects are assembled from named parts (car = body + window + wheel, bus = body + window +
  door + wheel, ...; several parts are shared between objects, and `door`/`window` are both
  objects and parts, i.e. labels of two categories). Sub-parts (hub, handle, eye, hair, ...)
  lie on a second part plane, inside their coarse part, so part pixels carry two labels;
- every region has a colour (11 BRODEN colours, pixel level) and most a material (pixel
  level), rendered as a fine luminance pattern over the colour (wood grain, brick, tile ...);
- texture images (20 %): the whole image is a two-colour pattern (striped, chequered ...),
  labelled with that texture (image level) and its colours.

Label maps are drawn at mask resolution (size/2) and the image is rendered from them at full
resolution, so every mask pixel is exactly a 2x2 block of the image and masks are exact.
Frequencies are long-tailed (Zipfian scenes and textures, rare objects such as kite or horse).
Material label numbers start at 256 or above so that an 8-bit decoding bug shows.
`concepts=N` adds procedural objects, parts, scenes and textures up to N labels (BRODEN-size
catalogues: 60k images, 1,197 concepts). Every image is drawn from its own generator seeded by
(seed, image index): `render(...)`/`ground_truth(...)` redraw any image's exact label maps.
"""

from __future__ import annotations

import argparse
import csv
import json
import multiprocessing
import os
import shutil
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

COLORS = {
    "black": (25, 25, 25),
    "blue": (40, 80, 210),
    "brown": (125, 75, 30),
    "green": (40, 165, 55),
    "grey": (128, 128, 128),
    "orange": (245, 140, 20),
    "pink": (245, 160, 200),
    "purple": (135, 50, 170),
    "red": (215, 30, 30),
    "white": (240, 240, 240),
    "yellow": (240, 220, 40),
}
MATERIALS = (
    "wood",
    "metal",
    "glass",
    "fabric",
    "plastic",
    "stone",
    "rubber",
    "paper",
    "fur",
    "brick",
    "tile",
    "skin",
    "foliage",
    "ceramic",
    "water",
    "leather",
)
TEXTURES = (
    "striped",
    "banded",
    "lined",
    "zigzagged",
    "chequered",
    "dotted",
    "polka-dotted",
    "grid",
    "crosshatched",
    "wavy",
    "spiralled",
    "sprinkled",
    "blotchy",
)
SCENE_IMAGE_FRACTION = 0.4
CLOSEUP_IMAGE_FRACTION = 0.4  # after scene images; the rest are texture images
VAL_FRACTION = 0.3
VERSION = 2  # in synthetic.json: bump when the drawing changes (a set of another version is redrawn elsewhere)

# name: (region, width range (fraction of mask size), aspect h/w, colours, material,
#        parts [(part, shape, box x0 y0 x1 y1 in the object's box, colour|None, material|None, plane)])
_W = ("wheel", "ellipse")
OBJECTS = {
    "car": (
        "ground",
        (0.30, 0.45),
        0.55,
        "red blue white black yellow grey",
        "metal",
        [
            ("body", "rect", (0, 0.35, 1, 0.8), None, None, 1),
            ("window", "rect", (0.2, 0.02, 0.78, 0.38), "blue", "glass", 1),
            (*_W, (0.06, 0.6, 0.34, 1), "black", "rubber", 1),
            (*_W, (0.66, 0.6, 0.94, 1), "black", "rubber", 1),
            ("hub", "ellipse", (0.14, 0.72, 0.26, 0.9), "grey", "metal", 2),
            ("hub", "ellipse", (0.74, 0.72, 0.86, 0.9), "grey", "metal", 2),
        ],
    ),
    "bus": (
        "ground",
        (0.40, 0.60),
        0.6,
        "yellow red white orange",
        "metal",
        [
            ("body", "rect", (0, 0, 1, 0.85), None, None, 1),
            ("window", "rect", (0.05, 0.1, 0.25, 0.4), "blue", "glass", 1),
            ("window", "rect", (0.3, 0.1, 0.5, 0.4), "blue", "glass", 1),
            ("window", "rect", (0.55, 0.1, 0.75, 0.4), "blue", "glass", 1),
            ("door", "rect", (0.8, 0.1, 0.95, 0.85), "grey", "metal", 1),
            (*_W, (0.08, 0.68, 0.3, 1), "black", "rubber", 1),
            (*_W, (0.62, 0.68, 0.84, 1), "black", "rubber", 1),
            ("hub", "ellipse", (0.15, 0.8, 0.23, 0.92), "grey", "metal", 2),
        ],
    ),
    "truck": (
        "ground",
        (0.35, 0.50),
        0.6,
        "white red green blue orange",
        "metal",
        [
            ("body", "rect", (0, 0.1, 0.65, 0.8), None, None, 1),
            ("cabin", "rect", (0.65, 0.3, 1, 0.8), None, None, 1),
            ("window", "rect", (0.72, 0.35, 0.92, 0.55), "blue", "glass", 1),
            (*_W, (0.05, 0.68, 0.27, 1), "black", "rubber", 1),
            (*_W, (0.7, 0.68, 0.92, 1), "black", "rubber", 1),
            ("hub", "ellipse", (0.76, 0.8, 0.86, 0.92), "grey", "metal", 2),
        ],
    ),
    "bicycle": (
        "ground",
        (0.20, 0.30),
        0.6,
        "red blue black green",
        "metal",
        [
            (*_W, (0, 0.45, 0.4, 1), "black", "rubber", 1),
            (*_W, (0.6, 0.45, 1, 1), "black", "rubber", 1),
            ("frame", "rect", (0.2, 0.5, 0.8, 0.6), None, None, 1),
            ("frame", "rect", (0.45, 0.2, 0.55, 0.75), None, None, 1),
            ("saddle", "rect", (0.3, 0.1, 0.55, 0.22), "black", "leather", 1),
        ],
    ),
    "person": (
        "ground",
        (0.10, 0.16),
        2.2,
        "red blue green white yellow purple orange black",
        "fabric",
        [
            ("head", "ellipse", (0.28, 0, 0.72, 0.2), "pink", "skin", 1),
            ("torso", "rect", (0.2, 0.2, 0.8, 0.6), None, None, 1),
            ("arm", "rect", (0.02, 0.22, 0.18, 0.56), None, None, 1),
            ("arm", "rect", (0.82, 0.22, 0.98, 0.56), None, None, 1),
            ("leg", "rect", (0.24, 0.6, 0.46, 1), "blue", "fabric", 1),
            ("leg", "rect", (0.54, 0.6, 0.76, 1), "blue", "fabric", 1),
            ("hair", "rect", (0.28, 0, 0.72, 0.07), "black", "fur", 2),
        ],
    ),
    "dog": (
        "ground",
        (0.18, 0.26),
        0.7,
        "brown black white grey",
        "fur",
        [
            ("torso", "ellipse", (0.12, 0.25, 0.85, 0.7), None, None, 1),
            ("head", "ellipse", (0.72, 0, 1, 0.42), None, None, 1),
            ("leg", "rect", (0.2, 0.6, 0.3, 1), None, None, 1),
            ("leg", "rect", (0.65, 0.6, 0.75, 1), None, None, 1),
            ("tail", "rect", (0, 0.22, 0.16, 0.32), None, None, 1),
            ("eye", "ellipse", (0.84, 0.1, 0.94, 0.22), "black", None, 2),
        ],
    ),
    "cat": (
        "ground",
        (0.14, 0.20),
        0.8,
        "orange grey black white",
        "fur",
        [
            ("torso", "ellipse", (0.1, 0.35, 0.75, 0.75), None, None, 1),
            ("head", "ellipse", (0.58, 0.1, 0.96, 0.46), None, None, 1),
            ("ear", "tri", (0.6, 0, 0.74, 0.17), None, None, 1),
            ("ear", "tri", (0.8, 0, 0.94, 0.17), None, None, 1),
            ("leg", "rect", (0.2, 0.65, 0.3, 1), None, None, 1),
            ("leg", "rect", (0.55, 0.65, 0.65, 1), None, None, 1),
            ("tail", "rect", (0, 0.3, 0.14, 0.4), None, None, 1),
            ("eye", "ellipse", (0.7, 0.2, 0.8, 0.3), "green", None, 2),
        ],
    ),
    "horse": (
        "ground",
        (0.30, 0.40),
        0.9,
        "brown black white",
        "fur",
        [
            ("torso", "ellipse", (0.15, 0.25, 0.8, 0.6), None, None, 1),
            ("head", "rect", (0.74, 0, 0.98, 0.28), None, None, 1),
            ("leg", "rect", (0.2, 0.5, 0.28, 1), None, None, 1),
            ("leg", "rect", (0.32, 0.5, 0.4, 1), None, None, 1),
            ("leg", "rect", (0.6, 0.5, 0.68, 1), None, None, 1),
            ("leg", "rect", (0.72, 0.5, 0.8, 1), None, None, 1),
            ("tail", "rect", (0.02, 0.25, 0.15, 0.55), "black", "fur", 1),
        ],
    ),
    "house": (
        "ground",
        (0.30, 0.45),
        0.9,
        "red white yellow brown",
        "brick",
        [
            ("facade", "rect", (0, 0.35, 1, 1), None, None, 1),
            ("roof", "tri", (0, 0, 1, 0.36), "grey", "tile", 1),
            ("window", "rect", (0.1, 0.48, 0.34, 0.7), "blue", "glass", 1),
            ("window", "rect", (0.66, 0.48, 0.9, 0.7), "blue", "glass", 1),
            ("door", "rect", (0.4, 0.58, 0.6, 1), "brown", "wood", 1),
            ("handle", "rect", (0.52, 0.76, 0.58, 0.86), "yellow", "metal", 2),
        ],
    ),
    "tree": (
        "ground",
        (0.18, 0.30),
        1.4,
        "green",
        "foliage",
        [
            ("trunk", "rect", (0.4, 0.55, 0.6, 1), "brown", "wood", 1),
            ("crown", "ellipse", (0, 0, 1, 0.65), "green", "foliage", 1),
        ],
    ),
    "table": (
        "ground",
        (0.25, 0.40),
        0.6,
        "brown white black",
        "wood",
        [
            ("tabletop", "rect", (0, 0, 1, 0.18), None, None, 1),
            ("leg", "rect", (0.05, 0.18, 0.15, 1), None, None, 1),
            ("leg", "rect", (0.85, 0.18, 0.95, 1), None, None, 1),
        ],
    ),
    "chair": (
        "ground",
        (0.12, 0.20),
        1.3,
        "brown red blue black",
        "wood",
        [
            ("backrest", "rect", (0, 0, 0.2, 0.6), None, None, 1),
            ("seat", "rect", (0, 0.5, 1, 0.62), None, None, 1),
            ("leg", "rect", (0.02, 0.62, 0.14, 1), None, None, 1),
            ("leg", "rect", (0.86, 0.62, 0.98, 1), None, None, 1),
        ],
    ),
    "sofa": (
        "ground",
        (0.35, 0.50),
        0.55,
        "red green blue purple grey brown",
        "fabric",
        [
            ("backrest", "rect", (0.05, 0, 0.95, 0.5), None, None, 1),
            ("seat", "rect", (0.1, 0.45, 0.9, 0.8), None, None, 1),
            ("arm", "rect", (0, 0.25, 0.15, 0.9), None, None, 1),
            ("arm", "rect", (0.85, 0.25, 1, 0.9), None, None, 1),
            ("leg", "rect", (0.05, 0.9, 0.14, 1), "black", "wood", 1),
            ("leg", "rect", (0.86, 0.9, 0.95, 1), "black", "wood", 1),
            ("cushion", "ellipse", (0.15, 0.06, 0.45, 0.42), "white", "fabric", 2),
        ],
    ),
    "lamp": (
        "ground",
        (0.08, 0.14),
        2.0,
        "yellow white orange",
        "fabric",
        [
            ("shade", "trap", (0, 0, 1, 0.35), None, None, 1),
            ("pole", "rect", (0.44, 0.35, 0.56, 0.9), "grey", "metal", 1),
            ("base", "rect", (0.2, 0.9, 0.8, 1), "grey", "metal", 1),
        ],
    ),
    "bottle": (
        "ground",
        (0.05, 0.08),
        2.5,
        "green brown blue",
        "glass",
        [
            ("cap", "rect", (0.35, 0, 0.65, 0.1), "red", "plastic", 1),
            ("neck", "rect", (0.35, 0.1, 0.65, 0.35), None, None, 1),
            ("belly", "rect", (0, 0.35, 1, 1), None, None, 1),
            ("label", "rect", (0, 0.55, 1, 0.8), "white", "paper", 2),
        ],
    ),
    "cup": (
        "ground",
        (0.07, 0.10),
        0.9,
        "white red blue yellow",
        "ceramic",
        [
            ("belly", "rect", (0, 0, 0.72, 1), None, None, 1),
            ("handle", "ellipse", (0.66, 0.2, 1, 0.7), None, None, 1),
        ],
    ),
    "tv": (
        "ground",
        (0.20, 0.30),
        0.75,
        "black grey",
        "plastic",
        [
            ("frame", "rect", (0, 0, 1, 0.85), None, None, 1),
            ("screen", "rect", (0.08, 0.08, 0.92, 0.78), "blue", "glass", 1),
            ("base", "rect", (0.38, 0.85, 0.62, 1), None, None, 1),
        ],
    ),
    "plant": (
        "ground",
        (0.10, 0.18),
        1.3,
        "green",
        "foliage",
        [
            ("crown", "ellipse", (0, 0, 1, 0.65), "green", "foliage", 1),
            ("pot", "rect", (0.2, 0.6, 0.8, 1), "orange", "ceramic", 1),
        ],
    ),
    "boat": (
        "ground",
        (0.25, 0.40),
        0.9,
        "white red blue yellow",
        "wood",
        [
            ("hull", "itrap", (0, 0.65, 1, 1), None, None, 1),
            ("mast", "rect", (0.46, 0, 0.54, 0.65), "brown", "wood", 1),
            ("sail", "tri", (0.08, 0.05, 0.44, 0.62), "white", "fabric", 1),
        ],
    ),
    "airplane": (
        "sky",
        (0.35, 0.50),
        0.35,
        "white grey",
        "metal",
        [
            ("fuselage", "ellipse", (0, 0.3, 1, 0.7), None, None, 1),
            ("wing", "rect", (0.38, 0, 0.58, 1), None, None, 1),
            ("tail", "tri", (0, 0, 0.15, 0.5), None, None, 1),
            ("window", "rect", (0.65, 0.4, 0.8, 0.5), "blue", "glass", 2),
        ],
    ),
    "kite": (
        "sky",
        (0.08, 0.12),
        1.0,
        "red yellow purple pink",
        "fabric",
        [("sail", "diamond", (0, 0, 1, 1), None, None, 1)],
    ),
    "clock": (
        "wall",
        (0.08, 0.12),
        1.0,
        "white",
        "plastic",
        [
            ("face", "ellipse", (0, 0, 1, 1), "white", "plastic", 1),
            ("hand", "rect", (0.46, 0.15, 0.54, 0.52), "black", "metal", 2),
        ],
    ),
    "sign": (
        "ground",
        (0.08, 0.14),
        1.6,
        "red blue green yellow",
        "metal",
        [
            ("board", "rect", (0, 0, 1, 0.45), None, None, 1),
            ("pole", "rect", (0.44, 0.45, 0.56, 1), "grey", "metal", 1),
        ],
    ),
    "door": (
        "ground",
        (0.10, 0.16),
        2.0,
        "brown white",
        "wood",
        [("handle", "rect", (0.74, 0.45, 0.88, 0.55), "yellow", "metal", 1)],
    ),
    "window": (
        "wall",
        (0.12, 0.20),
        1.0,
        "white",
        "wood",
        [
            ("frame", "rect", (0, 0, 1, 1), "white", "wood", 1),
            ("pane", "rect", (0.12, 0.12, 0.88, 0.88), "blue", "glass", 1),
        ],
    ),
    "book": (
        "ground",
        (0.05, 0.08),
        1.3,
        "red blue green black",
        "paper",
        [("cover", "rect", (0, 0, 1, 1), None, None, 1)],
    ),
}
# Background stuff: (colours, material or None).
STUFF = {
    "sky": ("blue", None),
    "wall": ("white yellow pink", "paper"),
    "floor": ("brown grey", "tile"),
    "road": ("grey black", "stone"),
    "grass": ("green", "foliage"),
    "water": ("blue", "water"),
}
# Scenes in order of frequency (Zipfian): (upper stuff, lower stuff, [(object, probability, tries)]).
SCENES = {
    "street": (
        "sky",
        "road",
        [
            ("car", 0.7, 2),
            ("bus", 0.3, 1),
            ("person", 0.5, 2),
            ("house", 0.5, 1),
            ("sign", 0.3, 1),
            ("bicycle", 0.2, 1),
            ("tree", 0.3, 1),
            ("truck", 0.2, 1),
            ("dog", 0.1, 1),
        ],
    ),
    "kitchen": (
        "wall",
        "floor",
        [
            ("table", 0.8, 1),
            ("chair", 0.6, 2),
            ("bottle", 0.5, 2),
            ("cup", 0.5, 2),
            ("clock", 0.1, 1),
            ("window", 0.4, 1),
            ("door", 0.3, 1),
            ("cat", 0.1, 1),
        ],
    ),
    "park": (
        "sky",
        "grass",
        [
            ("tree", 0.8, 3),
            ("person", 0.5, 2),
            ("dog", 0.4, 1),
            ("bicycle", 0.3, 1),
            ("kite", 0.1, 1),
        ],
    ),
    "living_room": (
        "wall",
        "floor",
        [
            ("sofa", 0.8, 1),
            ("tv", 0.6, 1),
            ("lamp", 0.5, 1),
            ("plant", 0.4, 1),
            ("table", 0.3, 1),
            ("cat", 0.2, 1),
            ("dog", 0.2, 1),
            ("window", 0.3, 1),
            ("book", 0.1, 1),
        ],
    ),
    "highway": (
        "sky",
        "road",
        [("car", 0.8, 3), ("truck", 0.5, 2), ("bus", 0.2, 1), ("sign", 0.4, 1)],
    ),
    "office": (
        "wall",
        "floor",
        [
            ("table", 0.8, 1),
            ("chair", 0.7, 2),
            ("tv", 0.6, 1),
            ("lamp", 0.4, 1),
            ("plant", 0.3, 1),
            ("bottle", 0.2, 1),
            ("clock", 0.1, 1),
            ("book", 0.15, 1),
            ("person", 0.3, 1),
        ],
    ),
    "forest": ("sky", "grass", [("tree", 1.0, 4), ("horse", 0.05, 1), ("dog", 0.1, 1)]),
    "harbor": ("sky", "water", [("boat", 0.9, 2), ("airplane", 0.05, 1)]),
    "airport": (
        "sky",
        "road",
        [("airplane", 0.8, 1), ("truck", 0.3, 1), ("bus", 0.3, 1), ("person", 0.3, 1)],
    ),
    "farm": (
        "sky",
        "grass",
        [
            ("horse", 0.6, 2),
            ("house", 0.5, 1),
            ("tree", 0.4, 2),
            ("truck", 0.3, 1),
            ("dog", 0.3, 1),
        ],
    ),
}


@dataclass
class Catalogue:
    """All concepts of a synthetic set: label numbers, categories and drawing specifications."""

    numbers: dict[str, int] = field(default_factory=dict)  # name -> global label number
    categories: dict[str, list[str]] = field(
        default_factory=dict
    )  # name -> categories, primary first
    objects: dict = field(default_factory=lambda: dict(OBJECTS))
    scenes: dict = field(
        default_factory=lambda: {k: (u, l, list(o)) for k, (u, l, o) in SCENES.items()}
    )
    textures: dict = field(default_factory=lambda: {name: (name,) for name in TEXTURES})

    def add(self, name: str, category: str) -> None:
        self.categories.setdefault(name, [])
        if category not in self.categories[name]:
            self.categories[name].append(category)


def build_catalogue(concepts: int | None = None, seed: int = 0) -> Catalogue:
    """The concept catalogue; `concepts` > the built-in count adds procedural concepts up to it."""
    cat = Catalogue()
    if concepts is not None:
        _extend(cat, concepts, np.random.default_rng([seed, 7]))
    for name in COLORS:
        cat.add(name, "color")
    for name in list(STUFF) + list(cat.objects):
        cat.add(name, "object")
    for spec in cat.objects.values():
        for part in spec[5]:
            cat.add(part[0], "part")
    for name in MATERIALS:
        cat.add(name, "material")
    for name in cat.scenes:
        cat.add(name, "scene")
    for name in cat.textures:
        cat.add(name, "texture")
    number = 1
    for category in ("color", "object", "part", "material", "scene", "texture"):
        if category == "material":
            number = max(number, 256)  # pixel-level labels above 255: G channel in use
        for name, cats in cat.categories.items():
            if cats[0] == category:
                cat.numbers[name] = number
                number += 1
    return cat


def _base_count() -> int:
    names = set(COLORS) | set(STUFF) | set(OBJECTS) | set(MATERIALS) | set(SCENES) | set(TEXTURES)
    names |= {part[0] for spec in OBJECTS.values() for part in spec[5]}
    return len(names)


def _extend(cat: Catalogue, concepts: int, rng: np.random.Generator) -> None:
    """Add procedural parts, objects, scenes and textures (BRODEN proportions) up to `concepts` labels."""
    extra = concepts - _base_count()
    if extra <= 0:
        return
    n_texture = max(0, round(extra * 0.04))
    n_part = max(0, round(extra * 0.19))
    n_scene = max(0, round(extra * 0.38))
    n_object = extra - n_texture - n_part - n_scene
    new_parts = [f"part_{k}" for k in range(n_part)]
    shapes = ("rect", "ellipse", "tri", "diamond", "trap", "itrap")
    names = list(COLORS)
    for k in range(n_object):
        colours = " ".join(rng.choice(names, size=2, replace=False))
        own = new_parts[k % n_part] if n_part else "body"
        parts = [
            (own, str(rng.choice(shapes)), (0, 0, 1, 0.7), None, None, 1),
            (
                str(rng.choice(["leg", "wheel", "base", "pole"])),
                "rect",
                (0.35, 0.7, 0.65, 1),
                "black",
                "rubber",
                1,
            ),
        ]
        material = str(rng.choice(MATERIALS))
        cat.objects[f"object_{k}"] = (
            "ground",
            (0.12, 0.3),
            float(rng.uniform(0.5, 1.5)),
            colours,
            material,
            parts,
        )
    object_names = list(cat.objects)
    for k in range(n_scene):
        upper, lower = (
            str(rng.choice(["sky", "wall"])),
            str(rng.choice(["road", "floor", "grass", "water"])),
        )
        chosen = rng.choice(object_names, size=min(5, len(object_names)), replace=False)
        cat.scenes[f"scene_{k}"] = (
            upper,
            lower,
            [(str(o), float(rng.uniform(0.2, 0.8)), 1) for o in chosen],
        )
    for k in range(n_object):  # every procedural object appears in some scene
        scene = cat.scenes[str(rng.choice(list(cat.scenes)))]
        scene[2].append((f"object_{k}", float(rng.uniform(0.1, 0.5)), 1))
    for k in range(n_texture):
        cat.textures[f"texture_{k}"] = (
            "angled",
            float(rng.uniform(0, np.pi)),
            int(rng.integers(4, 12)),
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


def _save_mask(path: Path, plane: np.ndarray) -> None:
    """Label numbers as an RGB PNG: R = n mod 256, G = n div 256 (BRODEN encoding)."""
    encoded = np.zeros(plane.shape + (3,), np.uint8)
    encoded[..., 0] = plane & 255
    encoded[..., 1] = plane >> 8
    Image.fromarray(encoded).save(path, compress_level=1)


def _write_image(folder: Path, drawn: SyntheticImage, size: int, tally: dict) -> dict[str, str]:
    """Write one image and its mask planes; count label occurrences; return its index.csv row."""
    Image.fromarray(drawn.image).save(folder / f"{drawn.name}.png", compress_level=1)
    m = size // 2
    row = {
        "image": f"{drawn.name}.png",
        "split": drawn.split,
        "ih": size,
        "iw": size,
        "sh": m,
        "sw": m,
    }
    for column, planes in PLANES.items():
        files = []
        for plane in planes:
            numbers, counts = np.unique(drawn.maps[plane], return_counts=True)
            if numbers.max() == 0:
                continue
            file_name = f"{drawn.name}_{plane}.png"
            _save_mask(folder / file_name, drawn.maps[plane])
            files.append(file_name)
            for number, count in zip(numbers, counts):
                if number:
                    tally[(int(number), column)].add(drawn.name)
                    tally["coverage"][int(number)] += count / (m * m)
        row[column] = ";".join(files)
    for column, number in (("scene", drawn.scene), ("texture", drawn.texture)):
        row[column] = "" if number is None else str(number)
        if number is not None:
            tally[(number, column)].add(drawn.name)
            tally["coverage"][number] += 1.0
    return row


_JOB: dict = {}


def _draw_one(i: int) -> tuple[dict, dict]:
    """Render and write image i of the job set up by ``_drawn_images``; its row and own tally."""
    job = _JOB
    tally: dict = defaultdict(set)
    tally["coverage"] = Counter()
    return _write_image(
        job["folder"], render(job["cat"], job["seed"], i, job["size"]), job["size"], tally
    ), tally


def _merge_tally(total: dict, part: dict) -> None:
    """Add one image's tally into the total (image order, so sums do not depend on workers)."""
    for key, value in part.items():
        if key == "coverage":
            for number, amount in value.items():
                total["coverage"][number] += amount
        else:
            total[key] |= value


def _drawn_images(folder: Path, cat: Catalogue, seed: int, images: int, size: int):
    """(row, tally) per image in index order; images are drawn by several processes when the
    machine has cores to spare (each image depends on (seed, i) alone)."""
    _JOB.update(folder=folder, cat=cat, seed=seed, size=size)
    workers = min(os.cpu_count() or 1, 16, max(1, images // 200))
    if workers <= 1:
        yield from map(_draw_one, range(images))
        return
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        yield from pool.imap(_draw_one, range(images), chunksize=32)


def _write_csv(path: Path, header: list[str], rows: list) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def _write_tables(folder: Path, cat: Catalogue, tally: dict) -> None:
    """label.csv, category.csv and c_<category>.csv from the catalogue and the counts."""
    labels, by_category = [], defaultdict(list)
    for name, number in sorted(cat.numbers.items(), key=lambda item: item[1]):
        images = set().union(*[tally[(number, c)] for c in cat.categories[name]])
        cats = ";".join(f"{c}({len(tally[(number, c)])})" for c in cat.categories[name])
        coverage = round(float(tally["coverage"][number]), 4)
        labels.append([number, name, cats, len(images), coverage, ""])
        for c in cat.categories[name]:
            by_category[c].append([number, name, len(tally[(number, c)]), coverage])
    _write_csv(
        folder / "label.csv",
        ["number", "name", "category", "frequency", "coverage", "syns"],
        labels,
    )
    categories = []
    for c in ("color", "object", "part", "material", "scene", "texture"):
        rows = [[code, *row] for code, row in enumerate(by_category[c], start=1)]
        _write_csv(folder / f"c_{c}.csv", ["code", "number", "name", "frequency", "coverage"], rows)
        seen = set().union(*[tally[(row[0], c)] for row in by_category[c]]) if rows else set()
        categories.append([c, 1, len(rows), len(rows), len(seen)])
    _write_csv(folder / "category.csv", ["name", "first", "last", "count", "frequency"], categories)


def generate_synthetic(
    out: str | Path,
    images: int = 2000,
    size: int = 128,
    seed: int = 0,
    concepts: int | None = None,
    progress: bool = True,
) -> Path:
    """Write the synthetic set to `out` (built in a temporary folder, renamed when complete).

    An existing complete set with the same parameters is reused; one with other parameters is
    an error (choose another `out`)."""
    out = Path(out)
    params = {
        "images": int(images),
        "size": int(size),
        "seed": int(seed),
        "concepts": concepts,
        "version": VERSION,
    }
    if (out / "index.csv").is_file():
        found = (
            json.loads((out / "synthetic.json").read_text())
            if (out / "synthetic.json").is_file()
            else None
        )
        if found is not None and {k: found.get(k) for k in params} != params:
            raise ValueError(
                f"{out}: holds a synthetic set with {found}, not {params}; choose another directory"
            )
        return out
    cat = build_catalogue(concepts, seed)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "images").mkdir(parents=True)
    tally: dict = defaultdict(set)
    tally["coverage"] = Counter()
    try:
        rows = []
        for row, counts in tqdm(
            _drawn_images(tmp / "images", cat, seed, images, size),
            total=images,
            desc="synthetic images",
            disable=not progress,
            mininterval=1,
        ):
            rows.append(row)
            _merge_tally(tally, counts)
        _write_tables(tmp, cat, tally)
        (tmp / "synthetic.json").write_text(json.dumps(params, indent=1))
        header = [
            "image",
            "split",
            "ih",
            "iw",
            "sh",
            "sw",
            "color",
            "object",
            "part",
            "material",
            "scene",
            "texture",
        ]
        _write_csv(tmp / "index.csv", header, [[row[k] for k in header] for row in rows])
        out.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def main(argv: list[str] | None = None) -> int:
    """CLI: python -m net2vec.data.synthetic --out DIR --images N --seed S [--size PX] [--concepts C]."""
    parser = argparse.ArgumentParser(description="Write a synthetic probe set in BRODEN format.")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--size", type=int, default=128, help="image size in pixels (masks: half)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--concepts", type=int, default=None, help="add procedural concepts up to this many labels"
    )
    args = parser.parse_args(argv)
    try:
        path = generate_synthetic(args.out, args.images, args.size, args.seed, args.concepts)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
