"""python -m bench.agreement: the patched engine against stock: first-step logits and tokens.

The command only; the code is bench.lab.agreement.
"""

import sys

from bench.lab.agreement import main

if __name__ == "__main__":
    sys.exit(main())
