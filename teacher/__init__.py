"""The VMuC-like teacher codec (``teacher.models``: registry names ``vmuc``, ``vmuc_tiny``) and
its training recipe.

Kept import-light on purpose: ``codec.registry`` imports ``teacher.models`` lazily when a
codec name is looked up, so importing this package pulls in no torch modules.
"""
