"""Turn runs into the paper's tables and figures: `python evaluate.py runs=[RUN_DIR,...]`."""
import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="conf", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    from net2vec.analysis import evaluate

    evaluate(cfg)


if __name__ == "__main__":
    main()
