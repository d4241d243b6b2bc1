"""``python -m student codec=NAME``: train a student from scratch with the shared engine.

The no-teacher baseline that distillation must beat; defaults in conf/train_student.yaml.
"""
import hydra

from codec.train import run


@hydra.main(version_base=None, config_path="pkg://conf", config_name="train_student")
def main(cfg) -> None:
    run(cfg)


if __name__ == "__main__":
    main()
