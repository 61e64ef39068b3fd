"""python -m bench.report: comparison and release tables, plots and a recommendation.

The command only; the code is bench.analysis.report.
"""

import sys

from bench.analysis.report import main

if __name__ == "__main__":
    sys.exit(main())
