"""Network Dissection follow-ups: `python experiments.py network=synthnet experiments.run=[alignment]`."""

from pathlib import Path

import hydra
from omegaconf import DictConfig

from net2vec.cli import one_line_errors, run


@hydra.main(version_base="1.3", config_path="conf", config_name="experiments")
def main(cfg: DictConfig) -> None:
    from net2vec.experiments import run as run_experiments

    with one_line_errors():
        run_experiments(cfg)


if __name__ == "__main__":
    run(main, Path(__file__).resolve().parent / "conf")
