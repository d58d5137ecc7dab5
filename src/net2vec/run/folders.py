"""A run's folder: where it is, the lock that keeps it one run's, and Hydra's record of the run
(``.hydra/`` and ``<job>.log``), written once the run holds its folder.

Hydra writes ``.hydra/config.yaml``, ``hydra.yaml``, ``overrides.yaml`` and opens the job's log
file before the task starts. A second ``train.py`` pointed at the folder of a live run (and then
refused by :func:`claim_run_dir`) would rewrite the live run's record and write into its log.
So ``conf/hydra/default.yaml`` turns both off (``output_subdir: null``, the file handler unused and
delayed), and :func:`hydra_record` writes the same files, with Hydra's own log format, after the
lock is taken (docs/reliability.md "One folder per run").
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
from collections.abc import Iterator
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

RECORD_DIR = ".hydra"


def run_dir_of(cfg: DictConfig) -> Path:
    """The run directory: `paths.output_dir` when set, else Hydra's runtime output directory."""
    output_dir = cfg.paths.get("output_dir") if "paths" in cfg else None
    try:
        return Path(output_dir or HydraConfig.get().runtime.output_dir)
    except ValueError:  # no Hydra context and no explicit directory
        raise ValueError("paths.output_dir is unset and no Hydra run is active") from None


class RunDirError(ValueError):
    """The run directory is in use by another running process (one line)."""


_CLAIMED: dict[Path, object] = {}  # run directories this process holds (open locked files)


def claim_run_dir(run_dir: Path) -> None:
    """Hold an exclusive lock on `run_dir` for this process's lifetime (released when it ends):
    a second live run in the same folder is refused instead of mixing its files into it."""
    run_dir = run_dir.resolve()
    if run_dir in _CLAIMED:
        return
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        handle = open(run_dir / ".run.lock", "a+")  # noqa: SIM115 (kept open: the lock's lifetime)
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise RunDirError(f"run directory {run_dir}: cannot write there ({reason})") from None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise RunDirError(
            f"run directory {run_dir} is in use by another running train.py; give this run its "
            "own folder (the default hydra.run.dir is unique) or wait for that run to end"
        ) from None
    _CLAIMED[run_dir] = handle


def write_record(cfg: DictConfig, run_dir: Path) -> None:
    """``.hydra/config.yaml`` (the job's config, unresolved), ``hydra.yaml`` and ``overrides.yaml``,
    as Hydra writes them."""
    hydra_cfg = HydraConfig.instance().cfg
    folder = run_dir / RECORD_DIR
    folder.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, folder / "config.yaml")
    OmegaConf.save(hydra_cfg, folder / "hydra.yaml")
    OmegaConf.save(hydra_cfg.hydra.overrides.task, folder / "overrides.yaml")


def log_handler(run_dir: Path) -> logging.Handler:
    """A file handler on ``<run_dir>/<job name>.log`` with the format of Hydra's job logging."""
    hydra = HydraConfig.get()
    formatters = hydra.job_logging.get("formatters") or {}
    style = (formatters.get("simple") or {}).get("format")
    handler = logging.FileHandler(run_dir / f"{hydra.job.name}.log")
    handler.setFormatter(
        logging.Formatter(style or "[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")
    )
    return handler


@contextlib.contextmanager
def hydra_record(cfg: DictConfig, run_dir: Path, enabled: bool = True) -> Iterator[None]:
    """Inside a Hydra job (and when `enabled`): write the record, log into the run's log file
    for the block's duration. Outside Hydra (tests, notebooks): nothing."""
    if not enabled or not HydraConfig.initialized():
        yield
        return
    write_record(cfg, run_dir)
    handler = log_handler(run_dir)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
        handler.close()
