"""python -m bench.reference: every engine side by side on one GPU, as a results folder.

The command only; the code is bench.lab.reference.
"""

import sys

from bench.lab.reference import main

if __name__ == "__main__":
    sys.exit(main())
