"""python -m bench.load --url URL --concurrency 1,4,16: latency and throughput under load.

The command only; the code is bench.online.load.
"""

import sys

from bench.online.load import main

if __name__ == "__main__":
    sys.exit(main())
