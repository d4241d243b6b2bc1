"""Student configs: the zoo (student.zoo) is the one source; Hydra's groups are stored from it
and compose into exactly the codecs the registry builds."""
from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from codec.config import codec_from_config
from codec.registry import list_codecs, resolve_config
from student.zoo import CONTEXTS, PRESETS, TINY_WIDTHS, TRANSFORMS

CONF = Path(str(resources.files("conf")))


def _compose(overrides):
    with initialize_config_dir(str(CONF), version_base=None):
        return compose(config_name="train", overrides=overrides)


@pytest.mark.parametrize("name", list_codecs("student_*"))
def test_preset_is_selectable_in_hydra_with_exactly_its_entry_defaults(name):
    """One source (student.zoo.PRESETS): Hydra's codec=NAME is stored from it, not copied."""
    node = OmegaConf.to_container(_compose([f"codec={name}"]).codec, resolve=True)
    assert node.pop("name") == name
    assert node.pop("rates") is None  # variable rate (codec.gain): off, and then not recorded in the config
    assert node == resolve_config(name, {})
    for key, value in PRESETS[name][1].items():
        assert node[key] == value


def test_no_yaml_copy_of_the_zoo_is_left_to_drift():
    assert not list((CONF / "codec").glob("student*.yaml"))
    assert not (CONF / "student").exists() or not list((CONF / "student").rglob("*.yaml"))


@pytest.mark.parametrize("group,choices", [("transform", TRANSFORMS), ("context", CONTEXTS)])
def test_group_choices_come_from_the_zoo(group, choices):
    for name, choice in choices.items():
        cfg = _compose(["codec=student", f"student/{group}={name}"])
        assert OmegaConf.to_container(cfg.codec[group], resolve=True) == choice


def test_generic_student_reads_both_groups_and_the_shape_defaults():
    node = OmegaConf.to_container(_compose(["codec=student"]).codec, resolve=True)
    assert node.pop("name") == "student"
    assert resolve_config("student", node) == resolve_config("student", {})
    with pytest.raises(Exception, match="msp_typo"):
        _compose(["codec=student", "student/context=msp_typo"])


@pytest.mark.parametrize("transform", sorted(TRANSFORMS))
@pytest.mark.parametrize("context", sorted(CONTEXTS))
def test_hydra_groups_pick_the_architecture(transform, context):
    """codec=student student/transform=A student/context=B builds A x B (a sweep over them is
    a sweep over architectures)."""
    widths = [f"codec.{k}={v}".replace(" ", "") for k, v in TINY_WIDTHS.items()]
    with initialize_config_dir(str(CONF), version_base=None):
        cfg = compose(config_name="train", overrides=["codec=student", f"student/transform={transform}",
                                                      f"student/context={context}", *widths])
    torch.manual_seed(0)
    model = codec_from_config(cfg.codec).eval()
    assert model.config["transform"] == TRANSFORMS[transform]
    assert model.config["context"] == CONTEXTS[context]
    assert model.context.kind == CONTEXTS[context]["kind"]
    x = torch.rand(1, 3, 40, 70)
    assert torch.equal(model.decompress(model.compress(x)), model.reconstruct(x)[0])
