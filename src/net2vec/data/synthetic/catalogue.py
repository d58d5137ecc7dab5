"""The concept catalogue of a synthetic set: label numbers and categories of the built-in concepts
(``concepts``), plus procedural ones up to a BRODEN-size count."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from net2vec.data.synthetic.concepts import COLORS, MATERIALS, OBJECTS, SCENES, STUFF, TEXTURES


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
