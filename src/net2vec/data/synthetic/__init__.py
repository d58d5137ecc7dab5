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

Modules: ``concepts`` (the built-in concept tables), ``catalogue`` (label numbers, procedural
concepts), ``render`` (one image's label maps and picture), ``write`` (the set on disk, the CLI).
"""

from net2vec.data.synthetic.catalogue import Catalogue, build_catalogue
from net2vec.data.synthetic.concepts import (
    COLORS,
    MATERIALS,
    OBJECTS,
    SCENES,
    STUFF,
    TEXTURES,
    VERSION,
)
from net2vec.data.synthetic.render import SyntheticImage, ground_truth, render
from net2vec.data.synthetic.write import generate_synthetic, main

__all__ = [
    "COLORS",
    "MATERIALS",
    "OBJECTS",
    "SCENES",
    "STUFF",
    "TEXTURES",
    "VERSION",
    "Catalogue",
    "build_catalogue",
    "SyntheticImage",
    "render",
    "ground_truth",
    "generate_synthetic",
    "main",
]
