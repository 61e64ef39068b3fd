"""python -m bench.speed: the decode-bandwidth benchmark and the patch ablation.

The command only; the code is bench.lab.speed.
"""

import sys

from bench.lab.speed import main

if __name__ == "__main__":
    sys.exit(main())
