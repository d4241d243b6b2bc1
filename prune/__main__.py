"""``python -m prune checkpoint=PATH target.decoder_kmac=X`` (conf/prune.yaml; prune.run documents
the run, prune.graph / prune.pruners the torch-pruning side, prune.plan the budget search)."""
import hydra

from prune.run import hydra_main


@hydra.main(version_base=None, config_path="pkg://conf", config_name="prune")
def main(cfg) -> None:
    hydra_main(cfg)


if __name__ == "__main__":
    main()
