"""Settings checked before any work, cache keys that hold every input of their content, and run
folders that a refused run leaves as they were."""

from __future__ import annotations

import builtins
import copy
import functools
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml
from conftest import compose_config
from omegaconf import OmegaConf
from torch import nn

from net2vec.common.cache import fingerprint_json
from net2vec.common.errors import ConfigError
from net2vec.features.extract import Extraction, store_spec
from net2vec.features.hooks import NetworkError
from net2vec.features.module_network import ModuleNetwork
from net2vec.features.timm_network import TimmNetwork
from net2vec.probes.fitting import readable_checkpoint
from net2vec.run.config import check_config, check_writable
from net2vec.run.pipeline import probe_key


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("settings")


@functools.lru_cache(maxsize=8)
def composed(workdir: Path, *groups: str):
    return compose_config(workdir, *groups)


def config_with(workdir: Path, *overrides: str):
    """The composed config of the overrides' group choices (composed once), with their values set
    (``features.layers=[a,b]`` as a list, ``+key=value`` added): Hydra's compose is slow."""
    groups = tuple(o for o in overrides if "." not in o.split("=")[0])
    cfg = copy.deepcopy(composed(workdir, *groups))
    for override in overrides:
        key, value = override.lstrip("+").split("=", 1)
        if "." in key:
            OmegaConf.update(cfg, key, yaml.safe_load(value), force_add=True)
    return cfg


@pytest.mark.parametrize(
    "overrides, fragment",
    [
        (["task.batch_size=0"], "task.batch_size=0: expected an integer >= 1"),
        (["task.epochs=-1"], "task.epochs=-1: expected an integer >= 1"),
        (["task.epochs=0"], "task.epochs=0: expected an integer >= 1"),
        (["task=cls", "task.epochs=0"], "task.epochs=0"),
        (["trainer.max_epochs=-1"], "trainer.max_epochs=-1"),
        (["task.ref_batch_size=0"], "task.ref_batch_size=0"),
        (["features.batch_size=0"], "features.batch_size=0"),
        (["task=netdissect", "task.detector_iou=-1"], "task.detector_iou=-1"),
        (["task=netdissect", "task.detector_iou=1.5"], "task.detector_iou=1.5"),
        (["task=netdissect", "task.batch_size=0"], "task.batch_size=0"),
        (["stats.null_draws=-1"], "stats.null_draws=-1: expected an integer >= 0"),
        (["stats.resamples=-1"], "stats.resamples=-1"),
        (["stats.level=1.5"], "stats.level=1.5"),
        (["stats.level=0"], "stats.level=0"),
        (["features.layers=nope"], "features.layers='nope': expected a list"),
        (["features.layers=[nope]"], "layer='nope'"),
        (["network=planted", "features.layers=[nope]"], "layer='nope'"),
        (["network=planted", "features.layers=[conv5,conv4]"], "layer='conv4'"),
    ],
)
def test_bad_settings_fail_before_any_work(workdir, overrides, fragment):
    cfg = config_with(workdir, *overrides)
    with pytest.raises((ConfigError, NetworkError), match=fragment.replace("[", r"\[")) as error:
        check_config(cfg)
    assert "\n" not in str(error.value)
    assert not (workdir / "data").exists() and not (workdir / "cache").exists()


@pytest.mark.parametrize(
    "overrides",
    [
        ["task=netdissect"],  # trains nothing: epochs 0 is its own setting
        ["network=planted", "features.layers=[conv5]"],
        ["features.layers=all"],
        ["features.layers=[conv4,conv5]", "stats.resamples=0", "stats.null_draws=0"],
    ],
)
def test_good_settings_pass(workdir, overrides):
    check_config(config_with(workdir, *overrides))


def test_a_cache_dir_that_takes_no_files_is_one_line(tmp_path):
    (tmp_path / "file").write_text("")
    check_writable(tmp_path / "cache" / "deep", "paths.cache_dir")
    for folder in (tmp_path / "file" / "cache", Path("/proc/net2vec-cache")):
        with pytest.raises(ConfigError, match="paths.cache_dir=.*: cannot write there"):
            check_writable(folder, "paths.cache_dir")
    sysfs = Path("/sys/kernel")  # an existing folder on a filesystem that refuses new files
    if sysfs.is_dir():
        with pytest.raises(ConfigError, match="cannot write there"):
            check_writable(sysfs, "paths.cache_dir")


# --- cache keys -------------------------------------------------------------------------------


def key_of(workdir, *overrides) -> str:
    stores = SimpleNamespace(
        concepts=SimpleNamespace(attrs={"key": "c"}),
        activations=SimpleNamespace(attrs={"key": "a"}),
    )
    return fingerprint_json(probe_key(config_with(workdir, *overrides), stores))


def test_the_probe_key_holds_every_trainer_setting_that_changes_the_fit(workdir):
    base = key_of(workdir)
    for changed in (
        "+trainer.limit_train_batches=1",
        "+trainer.accumulate_grad_batches=2",
        "+trainer.gradient_clip_val=0.5",
        "+trainer.precision=bf16-mixed",
        "task.epochs=4",
        "task.optimizer.lr=0.5",
        "seed=1",
    ):
        assert key_of(workdir, changed) != base, changed
    for same in (  # reporting only: the fitted probe is the same
        "trainer.enable_progress_bar=true",
        "trainer.log_every_n_steps=1",
        "+trainer.limit_val_batches=1",
        "task.batch_size=64",  # the default, given again
    ):
        assert key_of(workdir, same) == base, same


class Tiny(nn.Module):
    def __init__(self, width: int = 4) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, width, 3)


def spec_of(network) -> dict:
    concepts = SimpleNamespace(attrs={"key": "c", "dataset_root": "/data"})
    return store_spec(network, concepts, "conv5", 0.005, "/cache", Extraction())


def test_model_constructor_arguments_are_in_the_activation_store_key():
    timm_net = functools.partial(
        TimmNetwork, "r", "resnet18", weights=None, input_size=64, layers={"conv5": "layer4"}
    )
    plain, strided = timm_net(), timm_net(model_kwargs={"output_stride": 16})
    assert spec_of(plain) != spec_of(strided)
    assert spec_of(strided)["model_kwargs"] == {"output_stride": 16}
    assert "model_kwargs" not in spec_of(plain)  # keys without kwargs stay as they were
    module_net = functools.partial(ModuleNetwork, "m", weights=None, layers={"conv5": "conv"})
    partials = [module_net(model=functools.partial(Tiny, width=w)) for w in (4, 8)]
    built = [module_net(model=Tiny(width=w)) for w in (4, 8)]
    for a, b in (partials, built):
        assert spec_of(a)["arch"] != spec_of(b)["arch"]


# --- resume checkpoints -----------------------------------------------------------------------


class Payload:
    """Unpickling this runs `exec(code)`: a crafted checkpoint."""

    def __init__(self, code: str) -> None:
        self.code = code

    def __reduce__(self):
        return (builtins.exec, (self.code,))


def test_a_last_ckpt_that_safe_loading_refuses_is_set_aside(tmp_path, caplog):
    marker, last = tmp_path / "marker", tmp_path / "last.ckpt"
    code = f"open({str(marker)!r}, 'w').write('ran')"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "epoch": 1, "x": Payload(code)}, last)
    assert not readable_checkpoint(last)
    assert not last.exists() and (tmp_path / "last.ckpt.refused").is_file()
    assert not marker.exists() and "safe loading refuses it" in caplog.text
    torch.save({"state_dict": {"w": torch.zeros(1)}, "epoch": 1}, last)
    assert readable_checkpoint(last)  # a plain checkpoint still resumes
