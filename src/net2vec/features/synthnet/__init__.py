"""SynthNet: a small CNN trained on the synthetic probe set, the default network of `train.py`.

Modules ``conv1`` … ``conv5`` are each ``Sequential(conv 3×3, batch norm, ReLU)``, so each
module's output is the post-ReLU map the probes read (alias ``conv5`` -> module ``conv5``).
conv1-conv4 have stride 2 (16, 32, 64, 128 filters), conv5 stride 1 (128 filters): 8×8 at
128 px input (stride 16). Two heads on the spatially averaged conv5: ``scene`` (softmax over the
dataset's scene concepts) and ``presence`` (multi-label presence of every other concept: colours,
objects, parts, materials, textures), and one per-location head ``dense`` (1×1 conv on conv5:
the area fraction of every pixel-level concept in each conv5 cell, BCE), a segmentation task
that needs parts, materials and colours where they are, as the networks Net2Vec probes learn
them from their data (conv5 gets localised part and material detectors). Labels come from the
concept store, train split only.

`train_synthnet` is reproducible: seeded init, shuffling and flips, and a fixed single intra-op
thread (bit-identical on CPU for a given seed, whatever the thread setting of the caller; on a
shared 2-core machine one thread is also several times faster than two). The images are decoded
once into memory as uint8. About a minute for 2000 images (12 epochs).
`ensure_synthnet` keeps one checkpoint per (data fingerprint, seed, epochs) under
``<cache_dir>/synthnet/`` as ``.safetensors`` (cache.cached_build: locked, atomic, verified, a
corrupt one retrained): ``network=synthnet`` with ``weights: auto`` uses it.
CLI: ``python -m net2vec.features.synthnet --data DIR --out PATH [--epochs E] [--seed S]``
(``PATH`` ending in ``.safetensors``: that format; else a torch dict readable with weights_only).

Modules: ``model`` (architecture, checkpoint files), ``training`` (the fit, the CLI),
``network`` (the adapter and the cached checkpoint).
"""

from net2vec.features.synthnet.model import (
    EPOCHS,
    INPUT_SIZE,
    VERSION,
    SynthNet,
    load_synthnet,
    save_synthnet,
)
from net2vec.features.synthnet.network import (
    SynthNetNetwork,
    checkpoint_artifact,
    checkpoint_path,
    ensure_synthnet,
)
from net2vec.features.synthnet.training import dense_targets, fit_synthnet, main, train_synthnet

__all__ = [
    "EPOCHS",
    "INPUT_SIZE",
    "VERSION",
    "SynthNet",
    "SynthNetNetwork",
    "checkpoint_artifact",
    "checkpoint_path",
    "dense_targets",
    "ensure_synthnet",
    "fit_synthnet",
    "load_synthnet",
    "main",
    "save_synthnet",
    "train_synthnet",
]
