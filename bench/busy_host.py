"""python -m bench.busy_host: one run idle and under known synthetic loads, with what each recorded.

The command only; the code is bench.lab.busy_host.
"""

import sys

from bench.lab.busy_host import main

if __name__ == "__main__":
    sys.exit(main())
