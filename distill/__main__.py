"""``python -m distill teacher=PATH codec=STUDENT [distill/loss=PRESET] [distill.cache=DIR]``
(conf/distill.yaml; distill.run documents the run, distill.objective the loss)."""
import hydra

from distill.run import hydra_objective


@hydra.main(version_base=None, config_path="pkg://conf", config_name="distill")
def main(cfg) -> float:
    return hydra_objective(cfg)


if __name__ == "__main__":
    main()
