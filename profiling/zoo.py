"""python -m profiling.zoo teacher=TEACHER [students=[NAME,...]] [resolution=WxH] [target=35]

Profiles every registered ``student_*`` codec (or the given list) against the teacher; see
:func:`profiling.cli.run_zoo`.
"""
from profiling.cli import zoo_app

if __name__ == "__main__":
    zoo_app()
