"""A planted network with a class head: which filters each class logit reads is known.

Its input *is* a layer's activation maps (B, K, H, W) — e.g. a planted activation store's
(``features.planted``) — and its module ``layer`` (an identity) is the layer TCAV probes. Class
k's logit is the spatial mean of Σ_f reads[k, f] · a_f: it reads only the filters with a
nonzero entry in row k. With ``reads`` set to concept A's planted filters (``planted/weights``),
a correct TCAV gives A a significant score near 1 for that class and an unrelated concept none
(tests/test_tcav.py).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class PlantedClassifier(nn.Module):
    """Class logits = spatial mean of ``reads`` (n_classes, K) applied to the input maps."""

    def __init__(self, reads) -> None:
        super().__init__()
        self.layer = nn.Identity()
        self.register_buffer("reads", torch.as_tensor(np.asarray(reads), dtype=torch.float32))

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        return torch.einsum("bkhw,ck->bc", self.layer(maps), self.reads) / maps[0, 0].numel()
