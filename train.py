"""Train Net2Vec probes: `python train.py network=alexnet layer=conv5 task=seg`."""

from pathlib import Path

import hydra
from omegaconf import DictConfig

from net2vec.cli import one_line_errors, run


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> None:
    from net2vec.run.config import check_config

    with one_line_errors():
        check_config(cfg)  # bad values fail here, before torch is imported
        from net2vec.run.pipeline import train

        train(cfg)


if __name__ == "__main__":
    run(main, Path(__file__).resolve().parent / "conf")
