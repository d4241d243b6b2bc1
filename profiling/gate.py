"""python -m profiling.gate codec=STUDENT teacher=TEACHER [target=35] [resolution=WxH]

Exits 0 only if the student passes on both sides. This file is only the command: importing
it would replace the function ``profiling.gate`` with this module (Python sets a submodule
as an attribute of its package), so it refuses to be imported.
"""
if __name__ != "__main__":
    raise ImportError("profiling.gate is the command `python -m profiling.gate`; for the function use "
                      "`from profiling import gate` (defined in profiling.verdict)")

from profiling.cli import gate_app  # noqa: E402

gate_app()
