"""``python -m teacher``: train the VMuC-like teacher with the shared engine (codec.train).

Same loop, same keys as ``python -m codec.train``; only the defaults differ (conf/teacher.yaml:
codec=vmuc, the VMuC loss with beta, the VMuC-like schedule, four rate points under ``-m``).
"""
import hydra

from codec.train import run


@hydra.main(version_base=None, config_path="pkg://conf", config_name="teacher")
def main(cfg) -> None:
    run(cfg)


if __name__ == "__main__":
    main()
