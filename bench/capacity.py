"""python -m bench.capacity: a decode step's time against the static cache's capacity and content.

The command only; the code is bench.lab.capacity.
"""

import sys

from bench.lab.capacity import main

if __name__ == "__main__":
    sys.exit(main())
