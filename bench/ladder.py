"""python -m bench.ladder: real Whisper weights, every engine, model, voice and batch size.

The command only; the code is bench.lab.ladder.
"""

import sys

from bench.lab.ladder import main

if __name__ == "__main__":
    sys.exit(main())
