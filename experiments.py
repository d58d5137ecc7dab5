"""Network Dissection follow-ups: `python experiments.py network=synthnet experiments.run=[alignment]`."""
import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="conf", config_name="experiments")
def main(cfg: DictConfig) -> None:
    from net2vec.experiments import run

    run(cfg)


if __name__ == "__main__":
    main()
