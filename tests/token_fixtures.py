"""A tiny token network with a planted direction, built by `_target_` in the ViT tests."""

from __future__ import annotations

import torch
from torch import nn

from net2vec.features.extract import IMAGENET_MEAN, IMAGENET_STD

RED = (215, 30, 30)  # the synthetic set's red (net2vec.data.synthetic.COLORS)
DIRECTION = (0.0, 0.0, 0.8, 0.6, 0.0, 0.0, 0.0, 0.0)  # unit vector in token space (D = 8)


class RedTokens(nn.Module):
    """ViT-shaped: (B, 3, H, W) -> tokens (B, 2 + h*w, 8), p = 8, two prefix tokens (a class and
    a register token, both huge) then row-major patch tokens = DIRECTION x the fraction of red
    pixels in the patch + small seeded noise on every channel."""

    num_prefix_tokens = 2

    def __init__(self, patch: int = 8) -> None:
        super().__init__()
        self.patch = patch
        self.blocks = nn.Sequential(nn.Identity(), nn.Identity())
        self.register_buffer("direction", torch.tensor(DIRECTION))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        rgb = (x * torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) + mean) * 255
        red = ((rgb - torch.tensor(RED, dtype=x.dtype).view(1, 3, 1, 1)).abs().amax(1) < 40).float()
        fraction = nn.functional.avg_pool2d(red[:, None], self.patch).flatten(1)  # (B, h*w)
        noise = torch.randn(*fraction.shape, 8, generator=torch.Generator().manual_seed(0))
        patches = fraction[..., None] * self.direction + 0.05 * noise
        prefix = torch.full((x.shape[0], self.num_prefix_tokens, 8), 100.0)
        return self.blocks(torch.cat([prefix, patches], 1))
