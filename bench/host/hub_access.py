"""Whether the Hugging Face Hub answers, asked once before a run loads anything from it.

Without this, a machine that cannot reach the Hub (a GPU node without internet) waits for
huggingface_hub to retry every file it looks up, five times with backoff: about 23 s a file,
over two minutes before a pretrained Voxtral fails. One short request settles it instead. If
it fails, the process goes offline (HF_HUB_OFFLINE=1, the libraries' own switch): what the
local cache holds still loads, and what it lacks fails at once with bench's one-line hint.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

PROBE_TIMEOUT_S = 10.0  # huggingface_hub waits as long for a file's metadata (HF_HUB_ETAG_TIMEOUT)


def hub_references(cfg) -> list[str]:
    """The model id and dataset path of cfg that name something on the Hub (not a local folder)."""
    references = []
    if cfg.model.weights == "pretrained" and cfg.model.hub:
        references.append(cfg.model.id)
    if cfg.dataset.source == "hub":
        references.append(cfg.dataset.path)
    return [r for r in references if not Path(r).expanduser().exists()]


def unreachable_reason(endpoint: str, timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """None when endpoint answers at all (any HTTP status), else why not."""
    try:
        urllib.request.urlopen(urllib.request.Request(endpoint, method="HEAD"), timeout=timeout).close()
    except urllib.error.HTTPError:
        return None  # it answered, if only to refuse the bare HEAD
    except (urllib.error.URLError, OSError) as err:
        return str(getattr(err, "reason", err))
    return None


def go_offline_if_unreachable(cfg) -> str | None:
    """Switch this process to offline mode when cfg needs the Hub and it does not answer;
    returns a line saying so, or None."""
    if not hub_references(cfg):
        return None
    # huggingface_hub's own reading of HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE and HF_ENDPOINT,
    # which transformers and datasets follow too
    from huggingface_hub import constants

    if constants.is_offline_mode():
        return None
    reason = unreachable_reason(constants.ENDPOINT)
    if reason is None:
        return None
    # Both libraries read the variable once, when imported: huggingface_hub's copy (imported
    # above) is switched here, and datasets' too if a sweep's earlier job imported it
    os.environ["HF_HUB_OFFLINE"] = "1"
    constants.HF_HUB_OFFLINE = True
    if "datasets.config" in sys.modules:
        sys.modules["datasets.config"].HF_HUB_OFFLINE = True
    return (
        f"the Hugging Face Hub ({constants.ENDPOINT}) did not answer ({reason}); running offline: what the local "
        "cache holds loads, nothing is downloaded"
    )
