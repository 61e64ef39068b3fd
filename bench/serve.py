"""python -m bench.serve engine=... model=...: an engine behind OpenAI's transcription API.

The command only; the code is bench.online.server.
"""

import sys

from bench.online.server import main

if __name__ == "__main__":
    sys.exit(main())
