"""python -m bench.gate_power: how large a slowdown the gate catches, measured on real runs.

The command only; the code is bench.analysis.gate_power.
"""

import sys

from bench.analysis.gate_power import main

if __name__ == "__main__":
    sys.exit(main())
