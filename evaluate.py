"""Turn runs into the paper's tables and figures: `python evaluate.py runs=[RUN_DIR,...]`."""

from pathlib import Path

import hydra
from omegaconf import DictConfig

from net2vec.cli import one_line_errors, run


@hydra.main(version_base="1.3", config_path="conf", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    from net2vec.analysis import evaluate

    with one_line_errors():
        evaluate(cfg)


if __name__ == "__main__":
    run(main, Path(__file__).resolve().parent / "conf")
