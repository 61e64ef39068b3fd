"""Other libraries' output beside bench's: mistral_common logs its tokenizer's vocabulary at
INFO, datasets draws its own progress bars. A run prints bench's lines and its table; the rest
only with run.verbose=true."""

from __future__ import annotations

LIBRARY_LOGGERS = ("mistral_common", "datasets", "transformers", "huggingface_hub", "httpx", "urllib3")


def quiet_libraries(verbose: bool) -> None:
    """Other libraries' INFO lines and datasets' own progress bars at warning level unless
    run.verbose: what a run prints is bench's lines and its table."""
    import logging

    if verbose:
        return
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    import datasets

    datasets.disable_progress_bars()
