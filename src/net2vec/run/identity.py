"""Who a run is, as the experiment loggers show it: a readable name, the group it belongs to (its
Hydra sweep, or itself), its job type, tags, and its resolved configuration flattened to dotted
keys, so that a dashboard can filter, group and compare runs by any setting (docs/architecture.md).

A Hydra multirun's jobs share one group, named after the sweep folder (``hydra.sweep.dir``)
relative to the outputs root (``paths.root_dir``), e.g. ``multirun/2026-12-02/21-40-00``, and
led by the preset when the sweep is one (``experiment=table1 multirun/…``); each job's name
carries the values the sweep varies (read from the sweep's ``multirun.yaml``, the command line
and ``hydra.sweeper.params``), e.g. ``synthnet-conv5-seg seed=1``. A single run's group is its
own run directory, relative to the root likewise; an evaluate.py report joins its runs' group.
Nothing here needs a Hydra context: without one, a run is single.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

log = logging.getLogger(__name__)

GROUP_LENGTH = 128  # W&B's limit on a group name
SKIPPED = ("hydra", "logger")  # Hydra's own settings; the logger's settings
BUILT_PARTS = ("datamodule", "module")  # a task's factories repeat the task's own values


@dataclass
class RunIdentity:
    """Name, group, job type, tags and flattened configuration of one run."""

    name: str
    group: str
    job_type: str
    tags: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)


def flatten(tree: Mapping, prefix: str = "") -> dict[str, Any]:
    """Nested mappings to one level of dotted keys (``{"a": {"b": 1}}`` -> ``{"a.b": 1}``)."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def _resolved(node: DictConfig | ListConfig | Any, key) -> Any:
    """``node[key]`` resolved to plain values; a value that cannot resolve here stays its text."""
    try:
        value = node[key]
    except OmegaConfBaseException:  # e.g. ${hydra:...} outside a Hydra run
        return str(node._get_node(key)._value())
    if isinstance(value, DictConfig):
        return {k: _resolved(value, k) for k in value if k != "_partial_"}
    if isinstance(value, ListConfig):
        return [_resolved(value, i) for i in range(len(value))]
    return value


def flat_config(cfg: DictConfig, skip: tuple[str, ...] = SKIPPED) -> dict[str, Any]:
    """The resolved configuration with dotted keys (``task.optimizer.lr``), lists kept whole.

    Left out: the groups in ``skip``, ``_partial_`` flags and the task's built parts
    (``task.datamodule``, ``task.module``), whose values repeat the task's own keys."""
    tree = {key: _resolved(cfg, key) for key in cfg if key not in skip}
    for part in BUILT_PARTS:
        if isinstance(tree.get("task"), dict):
            tree["task"].pop(part, None)
    return flatten(tree)


def group_name(directory: str | Path, root: str | Path | None = None, preset: str = "") -> str:
    """A sweep's (or single run's) group: its folder relative to ``root`` (the outputs root;
    default the working directory) when inside it, else absolute, after ``experiment=<preset>``
    when given; the last 128 characters when longer."""
    path = Path(directory).resolve()
    try:
        text = str(path.relative_to(Path(root or Path.cwd()).resolve()))
    except ValueError:
        text = str(path)
    if preset:
        text = f"experiment={preset} {text}"
    return text[-GROUP_LENGTH:]


def _override_key(text: str) -> str:
    return text.split("=", 1)[0].lstrip("+~")


def swept_keys(overrides: list[str], sweeper_params: Mapping | None) -> set[str]:
    """Keys a sweep varies: command-line sweep overrides (``a=1,2``, ``range(...)``) and
    ``hydra.sweeper.params``."""
    parsed = OverridesParser.create().parse_overrides([str(o) for o in overrides])
    keys = {o.key_or_group for o in parsed if o.is_sweep_override()}
    return keys | {str(k) for k in (sweeper_params or {})}


def _hydra_job() -> DictConfig | None:
    """Hydra's config of the running job, or None outside a Hydra run."""
    return HydraConfig.get() if HydraConfig.initialized() else None


def sweep_of_job(hydra_cfg: DictConfig | None) -> tuple[Path, list[str], str] | None:
    """(sweep folder, the job's overrides of swept keys, its experiment preset or "") when this
    job belongs to a multirun."""
    if hydra_cfg is None or str(hydra_cfg.mode) != "RunMode.MULTIRUN":
        return None
    sweep_dir = Path(str(hydra_cfg.sweep.dir))
    sweep_file = sweep_dir / "multirun.yaml"
    overrides = list(hydra_cfg.overrides.task)
    if sweep_file.exists():  # the sweep's own command line: which keys it varies
        sweep = OmegaConf.load(sweep_file).hydra
        keys = swept_keys(list(sweep.overrides.task), sweep.sweeper.get("params"))
    else:
        log.warning("%s not found: naming runs by all their overrides", sweep_file)
        keys = {_override_key(o) for o in overrides}
    presets = [o.split("=", 1)[1] for o in overrides if _override_key(o) == "experiment"]
    return sweep_dir, [o for o in overrides if _override_key(o) in keys], ",".join(presets)


def run_identity(
    network: str,
    layer: str,
    task: str,
    run_dir: str | Path,
    config: dict[str, Any],
    root: str | Path | None = None,
) -> RunIdentity:
    """The identity of a training run of (network, layer, task) writing into ``run_dir``;
    ``root``: the outputs root that group names are relative to (default: working directory)."""
    base = f"{network}-{layer}-{task}"
    sweep = sweep_of_job(_hydra_job())
    tags = _tags(network, layer, task)
    if sweep is None:
        return RunIdentity(base, group_name(run_dir, root), task, tags, config)
    sweep_dir, varied, preset = sweep
    shown = [o for o in varied if _override_key(o) not in ("network", "layer", "task")]
    name = " ".join([base, *shown])
    config = {**config, "sweep.dir": str(sweep_dir), "sweep.overrides": ",".join(varied)}
    return RunIdentity(name, group_name(sweep_dir, root, preset), task, tags, config)


def _tags(network: str, layer: str, task: str) -> list[str]:
    return [f"network:{network}", f"layer:{layer}", f"task:{task}"]


def report_identity(
    run_groups: list[str | None], sweep: str | Path | None, out_dir: str | Path, config: dict
) -> RunIdentity:
    """An evaluate.py report's identity: in the group its runs share (recorded in their
    summary.json), else in the group of the ``sweep`` folder, else in its own."""
    shared = {group for group in run_groups if group}
    if len(shared) == 1:
        group = shared.pop()
    else:
        group = group_name(sweep or out_dir)
    return RunIdentity(f"report {Path(out_dir).name}", group, "evaluate", ["evaluate"], config)
