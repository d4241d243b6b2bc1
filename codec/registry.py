"""One registry of codecs: small entry functions, as in timm's ``_registry.py``.

    @register_codec("hyperprior")
    def hyperprior(N: int = 128, M: int = 192) -> Codec: ...

``create_codec(name, **config)`` calls the entry function with the config, and stores on the
instance its registry name and the *full* config (defaults filled in), which is what
checkpoints and bitstream headers record. Loading never guesses widths from weight shapes.

A keyword whose default is ``None`` and that is left at ``None`` is *not* recorded: optional
additions to an architecture (per-layer widths, say) leave the configs, config hashes and
bitstreams of models that do not use them exactly as they were.

Providers may also store Hydra configs (``register_config(group, name, node)``), so a preset
defined in Python is selectable as ``codec=NAME`` without a YAML copy of it.
"""
from __future__ import annotations

import fnmatch
import hashlib
import importlib
import inspect
import json
from typing import Callable

from codec.base import Codec

__all__ = ["register_codec", "register_config", "create_codec", "list_codecs", "config_hash", "codec_entry",
           "resolve_config"]

_REGISTRY: dict[str, Callable[..., Codec]] = {}
# Modules whose import registers codecs; imported lazily so `codec` imports none of the others
# at module level (docs/DESIGN.md: arrows point one way), yet every registered name is findable.
_PROVIDERS = ("codec.models", "teacher.models", "student.zoo")
_loaded = False


def register_codec(name: str):
    """Decorator: register an entry function under ``name``; duplicate names are an error."""

    def wrap(fn: Callable[..., Codec]) -> Callable[..., Codec]:
        if name in _REGISTRY and _REGISTRY[name] is not fn:
            raise ValueError(f"codec name {name!r} is already registered by {_REGISTRY[name].__module__}")
        _REGISTRY[name] = fn
        return fn

    return wrap


def register_config(group: str, name: str, node: dict) -> None:
    """Store ``node`` as the Hydra config ``group=name`` (Hydra's ConfigStore, which every
    Hydra app and ``compose`` call in this process searches beside ``pkg://conf``)."""
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(group=group, name=name, node=node)


def _load_providers() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for module in _PROVIDERS:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name != module:  # a provider that exists but fails to import is a real error
                raise


def list_codecs(pattern: str = "*") -> list[str]:
    """Registered codec names matching a shell-style pattern, sorted."""
    _load_providers()
    return sorted(n for n in _REGISTRY if fnmatch.fnmatch(n, pattern))


def codec_entry(name: str) -> Callable[..., Codec]:
    _load_providers()
    if name not in _REGISTRY:
        raise KeyError(f"unknown codec {name!r}; registered: {', '.join(list_codecs())}")
    return _REGISTRY[name]


def _jsonable(value):
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"codec config values must be JSON-like (numbers, strings, lists, dicts), got {type(value).__name__}")


def resolve_config(name: str, config: dict) -> dict:
    """The entry function's full keyword config: given values plus its defaults.

    ``rates`` (variable rate, codec.gain) is a key of every codec, handled here rather than by
    each entry function; left unset or None it is not recorded (a fixed-rate model).
    """
    fn = codec_entry(name)
    sig = inspect.signature(fn)
    config = dict(config)
    rates = config.pop("rates", None) if "rates" not in sig.parameters else None
    try:
        bound = sig.bind(**config)
    except TypeError as e:
        known = ", ".join(sig.parameters)
        raise TypeError(f"codec {name!r}: {e}; its config keys are: {known}") from None
    bound.apply_defaults()
    unset_optional = {k for k, p in sig.parameters.items() if p.default is None and bound.arguments.get(k) is None}
    full = {k: v for k, v in bound.arguments.items() if k not in unset_optional}
    if rates is not None:
        from codec.gain import check_rates

        try:
            full["rates"] = list(check_rates(rates))
        except ValueError as e:
            raise ValueError(f"codec {name!r}: {e}") from None
    return _jsonable(full)


def create_codec(name: str, **config) -> Codec:
    full = resolve_config(name, config)
    entry = codec_entry(name)
    handled_here = "rates" in full and "rates" not in inspect.signature(entry).parameters
    model = entry(**{k: v for k, v in full.items() if not (handled_here and k == "rates")})
    if not isinstance(model, Codec):
        raise TypeError(f"entry function of {name!r} returned {type(model).__name__}, not a Codec")
    model.registry_name = name
    model.config = full
    if handled_here:
        model.enable_variable_rate(full["rates"])
    model.check_parts()
    return model


def config_hash(name: str, config: dict) -> bytes:
    """8-byte hash of (name, config): bitstreams from another architecture are refused."""
    blob = json.dumps({"codec": name, "config": _jsonable(config)}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).digest()[:8]
