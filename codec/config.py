"""From a Hydra/OmegaConf ``codec`` node (or a checkpoint path) to a Codec instance.

One place for it, so every command (train, profiling, gate, zoo, bench) builds codecs the
same way: ``codec: {name: NAME, <entry-function keywords>...}``.
"""
from __future__ import annotations

from typing import Any

from codec.base import Codec
from codec.registry import create_codec

__all__ = ["codec_kwargs", "codec_from_config", "load_codec"]


def _plain(node: Any) -> Any:
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf
    except ImportError:  # pragma: no cover - omegaconf ships with hydra-core
        return node
    if isinstance(node, (DictConfig, ListConfig)):
        return OmegaConf.to_container(node, resolve=True)
    return node


def codec_kwargs(node: Any) -> tuple[str, dict]:
    cfg = dict(_plain(node))
    if "name" not in cfg:
        raise ValueError("codec config needs a 'name' (a registered codec); pick one with codec=NAME")
    name = cfg.pop("name")
    return name, cfg


def codec_from_config(node: Any) -> Codec:
    name, kwargs = codec_kwargs(node)
    return create_codec(name, **kwargs)


def load_codec(node: Any = None, checkpoint: str | None = None) -> Codec:
    """A checkpoint wins over the config: it carries its own architecture config."""
    if checkpoint:
        from codec.checkpoint import load_checkpoint

        model, _ = load_checkpoint(checkpoint)
        return model
    if node is None:
        raise ValueError("give a codec config or a checkpoint")
    return codec_from_config(node)
