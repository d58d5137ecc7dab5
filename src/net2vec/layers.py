"""List a network's probe-able layers: ``python -m net2vec.layers network=NAME [overrides]``.

The network is composed from ``conf/`` with Hydra overrides exactly as ``train.py`` does
(``network=timm network.arch=vit_small_patch16_224``, ``network.input_size=[224,320]`` …),
built with random weights (shapes do not depend on them), and run once on a dummy input of its
input size with a forward hook on every module. Every module whose output reads as (B, K, h, w)
maps (``features.tokens``: CNN maps, ViT tokens without their prefix tokens) is printed with its
alias, output shape, channels K, map size and stride; any of them is a valid ``layer=``.
Pass-through modules (Identity, Dropout, DropPath) and outputs whose two strides disagree (not
spatial maps, e.g. attention weights) are left out.
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
import torch
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig

from net2vec.cli import check_choices, one_line_errors
from net2vec.features.hooks import NetworkError
from net2vec.features.tokens import image_hw

CONF = Path(__file__).resolve().parents[2] / "conf"
PASS_THROUGH = ("Identity", "Dropout", "Dropout2d", "DropPath", "Flatten")  # repeat their input


def layer_table(network) -> list[dict]:
    """One row per module whose output reads as maps: name, alias, shape, channels, map, stride."""
    model = network.architecture(weights_given=False).eval()
    height, width = image_hw(network.input_size)
    outputs: dict[str, tuple] = {}

    def hook(name):
        def record(module, inputs, output):
            if isinstance(output, torch.Tensor) and name not in outputs:
                outputs[name] = tuple(output.shape)

        return record

    modules = [
        (name, module)
        for name, module in model.named_modules()
        if name and type(module).__name__ not in PASS_THROUGH
    ]
    handles = [module.register_forward_hook(hook(name)) for name, module in modules]
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, height, width))
    finally:
        for handle in handles:
            handle.remove()
    aliases = {path: alias for alias, path in network.layers.items()}
    rows = []
    for name, _ in modules:
        if name not in outputs or len(outputs[name]) not in (3, 4):
            continue
        try:
            maps = network.to_maps(torch.zeros(outputs[name]))
        except NetworkError:
            continue
        k, h, w = maps.shape[1:]
        if abs(height / h - width / w) > max(height / h, width / w) / 4:
            continue  # not a spatial map (e.g. attention heads x tokens x tokens)
        rows.append({"layer": name, "alias": aliases.get(name, ""), "output": outputs[name],
                     "channels": k, "map": f"{h}x{w}", "stride": width / w})  # fmt: skip
    return rows


def format_table(rows: list[dict], title: str) -> str:
    """The rows as an aligned text table."""
    header = ["layer", "alias", "output", "channels", "map", "stride"]
    cells = [header] + [
        [r["layer"], r["alias"], "x".join(map(str, r["output"])), str(r["channels"]), r["map"],
         f"{r['stride']:g}"]
        for r in rows
    ]  # fmt: skip
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(wd) for c, wd in zip(row, widths)).rstrip() for row in cells]
    return "\n".join([title, *lines])


def main(argv: list[str] | None = None) -> int:
    """Compose the network config from the overrides, print its layer table."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if any(arg in ("-h", "--help") for arg in argv):
        print(__doc__)
        return 0
    with one_line_errors():
        check_choices(CONF, argv)
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            cfg = compose("config", overrides=argv, return_hydra_config=True)
            HydraConfig.instance().set_config(cfg)  # ${hydra:runtime.cwd} in paths resolves
        network = hydra.utils.instantiate(cfg.network)
        if not hasattr(network, "architecture"):
            raise NetworkError(f"network={cfg.network.name}: has no model to list")
        rows = layer_table(network)
        size = "x".join(map(str, image_hw(network.input_size)))
        print(format_table(rows, f"{cfg.network.name}: {len(rows)} layers at input {size}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
