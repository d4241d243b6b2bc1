"""Student configs: the Hydra groups compose into codecs, and the yaml files mirror the Python
defaults they document (one source of truth, checked instead of trusted)."""
from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from codec.config import codec_from_config
from codec.registry import list_codecs, resolve_config
from student.zoo import CONTEXTS, TINY_WIDTHS, TRANSFORMS

CONF = Path(str(resources.files("conf")))


@pytest.mark.parametrize("name", list_codecs("student_*"))
def test_preset_yaml_mirrors_the_entry_defaults(name):
    path = CONF / "codec" / f"{name}.yaml"
    assert path.is_file(), f"add conf/codec/{name}.yaml (name + the entry function's keywords)"
    cfg = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    assert cfg.pop("name") == name
    assert resolve_config(name, cfg) == resolve_config(name, {}), f"conf/codec/{name}.yaml drifted from student/zoo.py"


@pytest.mark.parametrize("group,choices", [("transform", TRANSFORMS), ("context", CONTEXTS)])
def test_group_yaml_equals_the_zoo_choice(group, choices):
    files = sorted(p.stem for p in (CONF / "student" / group).glob("*.yaml"))
    assert files == sorted(choices)
    for name, choice in choices.items():
        cfg = OmegaConf.to_container(OmegaConf.load(CONF / "student" / group / f"{name}.yaml"))
        assert cfg == choice, f"conf/student/{group}/{name}.yaml differs from student.zoo"


def test_generic_student_yaml_mirrors_the_entry_defaults():
    with initialize_config_dir(str(CONF), version_base=None):
        cfg = compose(overrides=["+codec=student", "+student/transform=depthwise", "+student/context=checkerboard"])
    node = OmegaConf.to_container(cfg.codec, resolve=True)
    assert node.pop("name") == "student"
    assert resolve_config("student", node) == resolve_config("student", {})


@pytest.mark.parametrize("transform", sorted(TRANSFORMS))
@pytest.mark.parametrize("context", sorted(CONTEXTS))
def test_hydra_groups_pick_the_architecture(transform, context):
    """codec=student student/transform=A student/context=B builds A x B (a sweep over them is
    a sweep over architectures)."""
    widths = [f"codec.{k}={v}".replace(" ", "") for k, v in TINY_WIDTHS.items()]
    with initialize_config_dir(str(CONF), version_base=None):
        cfg = compose(overrides=["+codec=student", f"+student/transform={transform}", f"+student/context={context}",
                                 *widths])
    torch.manual_seed(0)
    model = codec_from_config(cfg.codec).eval()
    assert model.config["transform"] == TRANSFORMS[transform]
    assert model.config["context"] == CONTEXTS[context]
    assert model.context.kind == CONTEXTS[context]["kind"]
    x = torch.rand(1, 3, 40, 70)
    assert torch.equal(model.decompress(model.compress(x)), model.reconstruct(x)[0])
