"""Train Net2Vec probes: `python train.py network=alexnet layer=conv5 task=seg`."""
import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> None:
    from net2vec.pipeline import train

    train(cfg)


if __name__ == "__main__":
    main()
