"""python -m bench.convert_ct2 FOLDER OUT.pt: a CTranslate2 Whisper folder as an openai-whisper checkpoint.

The command only; the code is bench.engines._ct2_whisper.
"""

import sys

from bench.engines._ct2_whisper import main

if __name__ == "__main__":
    sys.exit(main())
