"""Hydra configs of vmuc-lite, shipped as package data (``pkg://conf``).

Architectures defined in Python (the student zoo: presets, transform and context choices) are
stored into Hydra's ConfigStore by their providers when the registry loads them; importing
this package (Hydra does, to read ``pkg://conf``) loads them, so ``codec=student_dw_ckbd`` or
``student/transform=shuffle`` resolve in every app and ``compose`` call.
"""
from codec.registry import list_codecs as _load_codec_providers

_load_codec_providers()
