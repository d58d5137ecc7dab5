"""Shared fixtures: compose the Hydra config once per test, CPU, tiny data, tmp paths."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

CONF = Path(__file__).resolve().parents[1] / "conf"
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")

TINY = [
    "data.images=80",
    "data.size=64",
    "task.epochs=3",
    "logger=none",
    "trainer.accelerator=cpu",
    "trainer.enable_progress_bar=false",
]


def compose_config(workdir: Path, *overrides: str, cache: Path | None = None):
    """The run config for `overrides`, with data, cache and run directory under `workdir`."""
    paths = [
        f"paths.root_dir={workdir}",
        f"paths.data_dir={workdir}/data",
        f"paths.cache_dir={cache or workdir / 'cache'}",
        f"paths.output_dir={workdir}/run",
    ]
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=[*paths, *TINY, *overrides])


@pytest.fixture(scope="session")
def default_root(tmp_path_factory) -> Path:
    """``paths.root_dir`` of the end-to-end runs on the embedded default: the synthetic set, the
    trained synthnet and the stores are built by the first such run and reused by the next."""
    return tmp_path_factory.mktemp("default")


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory) -> Path:
    """One cache (datasets, stores, probes) shared by the pipeline tests of a session."""
    return tmp_path_factory.mktemp("shared")


def group_config(group: str, name: str, **override):
    """``conf/<group>/<name>.yaml`` as a plain config (its defaults list dropped), with overrides."""
    cfg = OmegaConf.load(CONF / group / f"{name}.yaml")
    cfg.pop("defaults", None)
    return OmegaConf.merge(cfg, override)


def store_config(
    cache_dir,
    network: str = "synthnet",
    layer: str = "conv5",
    quantile: float = 0.01,
    **network_override,
):
    """The parts of a run config that `pipeline.prepare_activation_store` reads."""
    features = {
        "_target_": "net2vec.features.extract.Extraction",
        "dtype": "float32",
        "batch_size": 10,
        "num_workers": 0,
        "accelerator": "cpu",
        "progress": False,
    }
    return OmegaConf.create(
        {
            "network": group_config("network", network, **network_override),
            "layer": layer,
            "paths": {"cache_dir": str(cache_dir)},
            "features": features,
            "probe": {"quantile": quantile},
        }
    )
