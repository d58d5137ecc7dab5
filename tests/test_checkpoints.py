"""Checkpoints are read safely: weights_only torch files and .safetensors load; a file that needs
pickled code is refused with one line saying how to convert it, and its code never runs."""

from __future__ import annotations

import builtins
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from net2vec.features.hooks import NetworkError
from net2vec.features.networks import TorchvisionNetwork, read_checkpoint
from net2vec.features.synthnet import SynthNet, load_synthnet, save_synthnet
from net2vec.probes.fitting import readable_checkpoint

ROOT = Path(__file__).resolve().parents[1]


class Payload:
    """Unpickling this runs `exec(code)`: what a crafted checkpoint does to an unsafe loader."""

    def __init__(self, code: str) -> None:
        self.code = code

    def __reduce__(self):
        return (builtins.exec, (self.code,))


def crafted(path: Path, marker: Path) -> Path:
    code = f"open({str(marker)!r}, 'w').write('ran')"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "extra": Payload(code)}, path)
    return path


def test_a_crafted_pickle_is_refused_and_its_code_never_runs(tmp_path):
    marker = tmp_path / "marker"
    path = crafted(tmp_path / "evil.pth", marker)
    for load in (read_checkpoint, load_synthnet):
        with pytest.raises(NetworkError, match="safe loading refuses") as error:
            load(path)
        assert "\n" not in str(error.value) and "weights_only=False" in str(error.value)
        assert not marker.exists(), "the checkpoint's embedded code ran"


def test_a_state_dict_loads_from_pth_and_safetensors(tmp_path):
    model = TorchvisionNetwork("resnet18", "resnet18", weights=None).build()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    torch.save(
        {"state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": 3},
        tmp_path / "r.pth.tar",
    )
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "r.safetensors"))
    for name in ("r.pth.tar", "r.safetensors"):
        built = TorchvisionNetwork("resnet18", "resnet18", weights=str(tmp_path / name)).build()
        for key, value in built.state_dict().items():
            assert torch.equal(value, state[key]), (name, key)


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_synthnet_checkpoints_round_trip_in_both_formats(tmp_path, suffix):
    torch.manual_seed(0)
    model = SynthNet(3, 5).eval()
    save_synthnet(model, tmp_path / f"s{suffix}", {"seed": 0}, suffix == ".safetensors")
    loaded = load_synthnet(tmp_path / f"s{suffix}")
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)


@pytest.mark.parametrize(
    "content, fragment",
    [
        (b"not a checkpoint at all", "not a PyTorch checkpoint"),
        (b"", "not a PyTorch checkpoint"),
        (None, "not a SynthNet checkpoint"),  # a valid torch file of something else
    ],
)
def test_a_bad_synthnet_weights_file_is_one_line(tmp_path, content, fragment):
    path = tmp_path / "bad.pt"
    if content is None:
        torch.save({"w": torch.zeros(2)}, path)
    else:
        path.write_bytes(content)
    with pytest.raises(NetworkError, match=fragment) as error:
        load_synthnet(path)
    assert "\n" not in str(error.value)


@pytest.mark.slow
def test_train_py_refuses_a_crafted_checkpoint_with_exit_2(tmp_path):
    marker = tmp_path / "marker"
    path = crafted(tmp_path / "evil.pt", marker)
    env = {k: v for k, v in os.environ.items() if not k.startswith("NET2VEC_")}
    done = subprocess.run(
        [
            sys.executable,
            "train.py",
            f"network.weights={path}",
            "data.images=40",
            "data.size=64",
            f"paths.root_dir={tmp_path}",
            f"hydra.run.dir={tmp_path / 'run'}",
            "logger=none",
        ],
        cwd=ROOT,
        env={**env, "WANDB_MODE": "offline"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert (
        len(errors) == 1 and "safe loading refuses" in errors[0] and "Traceback" not in done.stderr
    )
    assert not marker.exists()


def test_a_damaged_resume_checkpoint_is_removed_not_fatal(tmp_path, caplog):
    path = tmp_path / "last.ckpt"
    torch.save({"state_dict": {"w": torch.arange(1000.0)}, "epoch": 1}, path)
    assert readable_checkpoint(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert not readable_checkpoint(path) and not path.exists()
    assert "damaged" in caplog.text
    assert not readable_checkpoint(tmp_path / "absent.ckpt")
