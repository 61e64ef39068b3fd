"""python -m bench.gate: fail a change that made an engine slower, beyond noise.

The command only; the code is bench.analysis.gate.
"""

import sys

from bench.analysis.gate import main

if __name__ == "__main__":
    sys.exit(main())
