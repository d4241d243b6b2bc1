"""``python -m codec.data prepare OUT_DIR``: see :mod:`codec.data.preparation`."""

import sys

from codec.data.preparation import main

if __name__ == "__main__":
    sys.exit(main())
