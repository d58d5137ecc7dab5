"""Shared pieces of the benchmarks: config composition, planted stores, timing, JSON output.

Every benchmark builds its stores through the real pipeline functions (`pipeline.ensure_dataset`,
`prepare_concept_store`, `pipeline.prepare_activation_store`) under ``--work`` (default
``/tmp/net2vec-bench``), so a second run reuses them and times only what it measures.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
sys.path.insert(0, str(ROOT / "tests"))  # tests/reference.py: the one-concept-at-a-time loop
os.environ.setdefault("WANDB_MODE", "offline")


def parser(description: str) -> argparse.ArgumentParser:
    """The common flags: --small, --work, --threads."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--small", action="store_true", help="a quick run (seconds, not minutes)")
    p.add_argument("--work", default="/tmp/net2vec-bench", help="data and store cache directory")
    p.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's choice)"
    )
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="where probes train")
    return p


def to_device(batch: dict, device: str) -> dict:
    """A collated batch with its tensors on `device`."""
    return {
        key: value.to(device, non_blocking=True) if hasattr(value, "to") else value
        for key, value in batch.items()
    }


def synchronize(device: str) -> None:
    """Wait for queued GPU work, so that wall-clock timings are honest."""
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def setup(args) -> None:
    """Quiet logging, torch threads."""
    import torch

    logging.basicConfig(level=logging.WARNING)
    for name in ("pytorch_lightning", "lightning", "lightning.pytorch", "net2vec"):
        logging.getLogger(name).setLevel(logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)


def compose(work: str | Path, *overrides: str):
    """The run config for `overrides` with data, cache and outputs under `work`, CPU, no logger."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    work = Path(work)
    base = [
        f"paths.root_dir={work}",
        f"paths.data_dir={work}/data",
        f"paths.cache_dir={work}/cache",
        f"paths.output_dir={work}/run",
        "logger=none",
        "trainer.accelerator=cpu",
        "trainer.enable_progress_bar=false",
        "trainer.enable_model_summary=false",
    ]
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return hydra_compose("config", overrides=[*base, *overrides])


def synthetic_overrides(images: int, size: int, concepts: int | None) -> list[str]:
    """data=synthetic of this size; a set with extra concepts gets its own root."""
    out = [f"data.images={images}", f"data.size={size}"]
    if concepts:
        out += [
            f"data.concepts={concepts}",
            f"data.root=${{paths.data_dir}}/synthetic-{images}-{size}-${{data.seed}}-c{concepts}",
        ]
    return out


def planted_stores(cfg):
    """(concept store, activation store) of `cfg` through the pipeline's own cached builders."""
    from net2vec.data.concept_store import prepare_concept_store
    from net2vec.run.pipeline import ensure_dataset, prepare_activation_store

    root = ensure_dataset(cfg.data)
    concepts = prepare_concept_store(root, Path(cfg.paths.cache_dir), progress=False)
    return concepts, prepare_activation_store(cfg, concepts)


def machine() -> str:
    """A short description of the machine the figures come from."""
    import torch

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    gpu = f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    return (
        f"{platform.machine()} {os.cpu_count()} cores{gpu}, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), load {load:.1f}"
    )


def peak_rss_mib() -> float:
    """Peak resident set size of this process in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


class Clock:
    """perf_counter stopwatch: ``with clock: ...`` accumulates ``clock.seconds``."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def __enter__(self):
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.seconds += time.perf_counter() - self._start


def emit(name: str, record: dict, summary: list[str]) -> None:
    """Print the one JSON line, then the human summary."""
    print(json.dumps({"benchmark": name, **record}, sort_keys=False))
    for line in summary:
        print(line)
