"""What the Voxtral engines share: weights, processor, prompt layout, length matching.

Pretrained weights and processor come from the Hub id or a local folder. Random
weights are built from the architecture in conf/model/<name>.yaml, and the processor
from a Tekken tokenizer shipped inside mistral-common (tekken_240911.json: the same
131,072-token vocabulary) given Voxtral's special tokens and audio settings, so a run
needs no download and tokenises exactly as the real processor lays prompts out.
"""

from __future__ import annotations

import atexit
import json
import shutil
from functools import cache
from pathlib import Path

import numpy as np
import torch

from bench.data.audio import SAMPLE_RATE
from bench.engines._fast.lengths import check_budget
from bench.engines.base import DecoderShape, Engine, compiled_graphs  # noqa: F401 - compile bookkeeping
from bench.errors import BenchError

# Voxtral's special-token ids (its tekken.json) and audio layout.
BOS, EOS, PAD = 1, 2, 11
BEGIN_INST, END_INST = 3, 4
AUDIO, BEGIN_AUDIO, TRANSCRIBE = 24, 25, 34
CHUNK_SAMPLES = 30 * SAMPLE_RATE
TOKENS_PER_CHUNK = 375  # 3000 mel frames -> 1500 encoder frames -> 4 stacked per token

_SPECIAL_NAMES = {
    0: "<unk>", 1: "<s>", 2: "</s>", 3: "[INST]", 4: "[/INST]", 5: "[AVAILABLE_TOOLS]",
    6: "[/AVAILABLE_TOOLS]", 7: "[TOOL_RESULTS]", 8: "[/TOOL_RESULTS]", 9: "[TOOL_CALLS]", 10: "[IMG]",
    11: "<pad>", 12: "[IMG_BREAK]", 13: "[IMG_END]", 14: "[PREFIX]", 15: "[MIDDLE]", 16: "[SUFFIX]",
    17: "[SYSTEM_PROMPT]", 18: "[/SYSTEM_PROMPT]", 19: "[TOOL_CONTENT]", 20: "[ARGS]", 21: "[CALL_ID]",
    24: "[AUDIO]", 25: "[BEGIN_AUDIO]", 34: "[TRANSCRIBE]",
}  # fmt: skip
SHIPPED_TEKKEN = "tekken_240911.json"


@cache
def local_tokenizer_dir() -> Path:
    """A folder with a Voxtral-layout tekken.json built from mistral-common's shipped file."""
    import tempfile

    import mistral_common

    source = Path(mistral_common.__file__).parent / "data" / SHIPPED_TEKKEN
    data = json.loads(source.read_text())
    data["config"]["version"] = "v7"  # the version Voxtral's tokenizer declares
    n_special = data["config"]["default_num_special_tokens"]
    data["special_tokens"] = [
        {"rank": r, "token_str": _SPECIAL_NAMES.get(r, f"<SPECIAL_{r}>"), "is_control": True} for r in range(n_special)
    ]
    data["audio"] = {
        "sampling_rate": SAMPLE_RATE,
        "frame_rate": 12.5,
        "audio_encoding_config": {"num_mel_bins": 128, "hop_length": 160, "window_size": 400},
        "chunk_length_s": 30.0,
        "transcription_format": "instruct",
    }
    folder = Path(tempfile.mkdtemp(prefix="bench-voxtral-tokenizer-"))
    # 11 MB a process: left behind, every run and test process added a folder to /tmp
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    (folder / "tekken.json").write_text(json.dumps(data))
    return folder


@cache
def local_processor():
    """Voxtral's processor (WhisperFeatureExtractor + Tekken) built with no download.

    Cached: reading the 150,000-entry vocabulary takes seconds, and it never changes."""
    from transformers import VoxtralProcessor, WhisperFeatureExtractor
    from transformers.tokenization_mistral_common import MistralCommonBackend

    tokenizer = MistralCommonBackend(tokenizer_path=str(local_tokenizer_dir() / "tekken.json"))
    features = WhisperFeatureExtractor(
        feature_size=128, sampling_rate=SAMPLE_RATE, hop_length=160, chunk_length=30, n_fft=400
    )
    return VoxtralProcessor(feature_extractor=features, tokenizer=tokenizer)


def _offline_hint(model_id: str, err: Exception) -> BenchError:
    return BenchError(
        f"cannot load Voxtral {model_id!r} ({str(err).splitlines()[0]}); log in / download it with "
        f"`hf download {model_id}`, pass model.id=/path/to/local/folder, or run offline with "
        "model.weights=random"
    )


def transcription_request(processor, audios, language: str, model_id: str):
    """The processor's transcription request, as stock runs it: the clips written to WAV and
    read back, log-mel on the host, prompt ids with the audio placeholders."""
    return processor.apply_transcription_request(
        language=language,
        audio=list(audios),
        format=["wav"] * len(audios),
        model_id=model_id,
        sampling_rate=SAMPLE_RATE,
    )


def load_processor(model_cfg):
    if model_cfg.weights == "random":
        return local_processor()
    from transformers import AutoProcessor

    try:
        return AutoProcessor.from_pretrained(model_cfg.id)
    except OSError as err:
        raise _offline_hint(model_cfg.id, err) from err


# The oldest transformers the Voxtral engines run on (pyproject.toml says the same; a test
# checks): a GPU host's own older copy would otherwise fail deep inside an engine.
MIN_TRANSFORMERS = "5.13"


def check_transformers_version(installed: str) -> None:
    from packaging.version import Version

    if Version(installed) < Version(MIN_TRANSFORMERS):
        raise BenchError(
            f"the Voxtral engines need transformers>={MIN_TRANSFORMERS}, this environment has {installed}: "
            f"pip install -U 'transformers>={MIN_TRANSFORMERS}' (or carry it in the wheelhouse)"
        )


def load_model(model_cfg, architecture: dict | None, device: torch.device, dtype: torch.dtype):
    import transformers
    from transformers import VoxtralConfig, VoxtralForConditionalGeneration

    check_transformers_version(transformers.__version__)
    if model_cfg.weights == "pretrained":
        try:
            model = VoxtralForConditionalGeneration.from_pretrained(model_cfg.id, dtype=dtype, device_map=device)
        except OSError as err:
            raise _offline_hint(model_cfg.id, err) from err
    else:
        config = VoxtralConfig(**architecture)
        torch.manual_seed(model_cfg.seed)
        with torch.device(device):  # initialise on the device: seconds for 4.7B on a GPU
            model = VoxtralForConditionalGeneration._from_config(config, dtype=dtype)
    model.generation_config.pad_token_id = PAD
    model.generation_config.eos_token_id = EOS
    return model.eval()


def n_chunks(audio: np.ndarray) -> int:
    return chunks_in(len(audio))


def chunks_in(samples: int) -> int:
    """30 s chunks a clip of this many samples is cut into (at least one)."""
    return max(1, -(-samples // CHUNK_SAMPLES))


def transcription_prompt(chunks: int, language_ids: list[int]) -> list[int]:
    """The token layout of Voxtral's transcription request (mistral-common's instruct format)."""
    return [
        BOS,
        BEGIN_INST,
        BEGIN_AUDIO,
        *[AUDIO] * (TOKENS_PER_CHUNK * chunks),
        END_INST,
        *language_ids,
        TRANSCRIBE,
    ]


def count_tokens(tokenizer, text: str) -> int:
    """Tokens Voxtral writes for a transcript (no special tokens)."""
    return len(tokenizer.encode(text.strip(), add_special_tokens=False)) if text.strip() else 0


def static_cache_len(chunks: int, max_new_tokens: int) -> int:
    """KV slots a static cache needs for clips of up to `chunks` 30 s chunks: the prompt
    (BOS, [INST], [BEGIN_AUDIO], the audio placeholders, [/INST], lang:xx, [TRANSCRIBE]: 16
    slots cover all but the audio) and the token budget, which counts per chunk."""
    return 16 + chunks * (TOKENS_PER_CHUNK + max_new_tokens)


def token_budget(max_new_tokens: int, audios, target_tokens: list[int] | None) -> int:
    """New tokens a batch may generate. engine.max_new_tokens counts per 30 s chunk of the
    batch's longest clip, because a long-form transcript grows with its audio."""
    budget = max_new_tokens * max(n_chunks(a) for a in audios)
    check_budget(
        budget, target_tokens, f"engine.max_new_tokens={max_new_tokens} per 30 s chunk", "engine.max_new_tokens"
    )
    return budget


@cache
def language_ids(language: str) -> tuple[int, ...]:
    """The tokens of "lang:xx" in a transcription request (the shipped Tekken vocabulary is Voxtral's)."""
    return tuple(local_processor().tokenizer.encode(f"lang:{language}", add_special_tokens=False))


class VoxtralEngine(Engine):
    """What every Voxtral engine declares: its decoder, its prompt, its audio placeholders."""

    @classmethod
    def decoder_shape(cls, architecture: dict) -> DecoderShape:
        text = architecture["text_config"]
        return DecoderShape(
            layers=text["num_hidden_layers"],
            hidden=text["hidden_size"],
            inner=text["intermediate_size"],
            heads=text["num_attention_heads"],
            kv_heads=text["num_key_value_heads"],
            head_dim=text["head_dim"],
            vocab=text["vocab_size"],
        )

    @classmethod
    def context_tokens(cls, samples: int, language: str = "en") -> int:
        return len(transcription_prompt(chunks_in(samples), list(language_ids(language))))

    @classmethod
    def audio_placeholders(cls, samples: int) -> int:
        return TOKENS_PER_CHUNK * chunks_in(samples)
