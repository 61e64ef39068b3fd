"""python -m bench.wheelhouse: wheels of the missing dependencies for an offline GPU host.

The command only; the code is bench.lab.wheelhouse.
"""

import sys

from bench.lab.wheelhouse import main

if __name__ == "__main__":
    sys.exit(main())
