"""What every Whisper engine shares: one source of weights in two layouts, the tokenizer, and
openai-whisper's decoding rules as every engine applies them.

Weights: openai-whisper's `Whisper` is built (seeded random weights, a checkpoint by name
or path, or a CTranslate2 folder converted exactly: `_ct2_whisper`) and, for the engines
that run transformers' `WhisperForConditionalGeneration`, converted key by key
(`hf_state_dict`), so every Whisper engine holds the very same numbers. A Hub id or a local
folder of transformers' (a config.json, no model.bin) loads straight into transformers instead.

Decoding rules (openai-whisper's DecodingTask with temperature 0 and no timestamps): the
prompt is <|startoftranscript|><|en|><|transcribe|><|notimestamps|>, after
<|startofprev|> and the previous window's tokens in long-form; a blank or end-of-text is
suppressed as the first token, non-speech tokens always; greedy after that.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Generator
from functools import cache
from pathlib import Path

import numpy as np
import torch

from bench.engines import _ct2_whisper as ct2
from bench.engines._fast.lengths import generated_lengths
from bench.engines.base import DecoderShape, Engine, Transcript, run_to_end, share_tokens, window_lengths
from bench.errors import BenchError
from bench.pipeline.clock import Clock

N_FFT, HOP = 400, 160
WINDOW_SAMPLES = 30 * 16_000


# -- weights ----------------------------------------------------------------------------------
def openai_model(model_cfg, architecture: dict | None, device: torch.device):
    """openai-whisper's model in float32: seeded random weights, or a checkpoint name or path."""
    import whisper
    from whisper.model import ModelDimensions, Whisper

    if model_cfg.weights == "pretrained" and ct2.is_ct2_folder(model_cfg.id):
        return ct2.openai_model(model_cfg.id, device)  # faster-whisper's weights, converted exactly
    if model_cfg.weights == "pretrained":
        try:
            return whisper.load_model(model_cfg.id, device=device)
        except (RuntimeError, OSError) as err:
            raise BenchError(
                f"cannot load Whisper weights {model_cfg.id!r} ({str(err).splitlines()[0]}); "
                "put the checkpoint in ~/.cache/whisper, pass model.id=/path/to/large-v3.pt, "
                "or run offline with model.weights=random"
            ) from err
    torch.manual_seed(model_cfg.seed)
    with torch.device(device):  # initialise in place: seconds on a GPU, not minutes
        model = Whisper(ModelDimensions(**architecture))
        # openai-whisper leaves the decoder's learned positions as torch.empty (a checkpoint
        # fills them): draw them from the seed too, or two builds with one seed hold different
        # (even non-finite) values and decode differently
        torch.nn.init.normal_(model.decoder.positional_embedding, std=0.02)
    return model


_BLOCK_PARTS = {
    "attn.query": "self_attn.q_proj",
    "attn.key": "self_attn.k_proj",
    "attn.value": "self_attn.v_proj",
    "attn.out": "self_attn.out_proj",
    "attn_ln": "self_attn_layer_norm",
    "cross_attn.query": "encoder_attn.q_proj",
    "cross_attn.key": "encoder_attn.k_proj",
    "cross_attn.value": "encoder_attn.v_proj",
    "cross_attn.out": "encoder_attn.out_proj",
    "cross_attn_ln": "encoder_attn_layer_norm",
    "mlp.0": "fc1",
    "mlp.2": "fc2",
    "mlp_ln": "final_layer_norm",
}
_TOP_PARTS = {
    "encoder.positional_embedding": "model.encoder.embed_positions.weight",
    "decoder.positional_embedding": "model.decoder.embed_positions.weight",
    "decoder.token_embedding.weight": "model.decoder.embed_tokens.weight",
    "encoder.ln_post.weight": "model.encoder.layer_norm.weight",
    "encoder.ln_post.bias": "model.encoder.layer_norm.bias",
    "decoder.ln.weight": "model.decoder.layer_norm.weight",
    "decoder.ln.bias": "model.decoder.layer_norm.bias",
}
_BLOCK_KEY = re.compile(r"(encoder|decoder)\.blocks\.(\d+)\.(.+)\.(weight|bias)")


def hf_state_dict(openai_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """openai-whisper's parameter names in transformers' WhisperForConditionalGeneration layout."""
    out = {}
    for key, value in openai_state.items():
        if key in _TOP_PARTS:
            out[_TOP_PARTS[key]] = value
        elif key.startswith("encoder.conv"):
            out[f"model.{key}"] = value
        elif (match := _BLOCK_KEY.fullmatch(key)) and match.group(3) in _BLOCK_PARTS:
            side, index, part, kind = match.groups()
            out[f"model.{side}.layers.{index}.{_BLOCK_PARTS[part]}.{kind}"] = value
        else:
            raise BenchError(f"no transformers name for openai-whisper's {key!r}")
    out["proj_out.weight"] = out["model.decoder.embed_tokens.weight"]  # the output projection is tied
    return out


def hf_config(dims, tokenizer):
    from transformers import WhisperConfig

    return WhisperConfig(
        vocab_size=dims.n_vocab,
        num_mel_bins=dims.n_mels,
        d_model=dims.n_audio_state,
        encoder_layers=dims.n_audio_layer,
        encoder_attention_heads=dims.n_audio_head,
        encoder_ffn_dim=4 * dims.n_audio_state,
        decoder_layers=dims.n_text_layer,
        decoder_attention_heads=dims.n_text_head,
        decoder_ffn_dim=4 * dims.n_text_state,
        max_source_positions=dims.n_audio_ctx,
        max_target_positions=dims.n_text_ctx,
        activation_function="gelu",
        pad_token_id=tokenizer.eot,
        bos_token_id=tokenizer.eot,
        eos_token_id=tokenizer.eot,
        decoder_start_token_id=tokenizer.sot,
    )


def is_transformers_checkpoint(model_id: str) -> bool:
    """A local folder with a config.json, or a Hub id ("org/name"): not an openai-whisper
    checkpoint, nor a CTranslate2 folder (converted to openai-whisper's layout first)."""
    if model_id.startswith("package:") or ct2.is_ct2_folder(model_id):
        return False
    path = Path(model_id).expanduser()
    return (path / "config.json").exists() or (not path.exists() and "/" in model_id and not model_id.endswith(".pt"))


def hf_model(model_cfg, architecture: dict | None, device: torch.device, dtype: torch.dtype):
    """transformers' WhisperForConditionalGeneration holding the same weights as openai_model."""
    from transformers import WhisperForConditionalGeneration

    if model_cfg.weights == "pretrained" and is_transformers_checkpoint(model_cfg.id):
        try:
            model = WhisperForConditionalGeneration.from_pretrained(model_cfg.id, dtype=dtype, device_map=device)
        except OSError as err:
            raise BenchError(
                f"cannot load Whisper {model_cfg.id!r} ({str(err).splitlines()[0]}); download it with "
                f"`hf download {model_cfg.id}`, pass an openai-whisper checkpoint, or run with model.weights=random"
            ) from err
        return model.eval()
    source = openai_model(model_cfg, architecture, device)
    # Built without storage and given the source's tensors: built the usual way, its layers
    # drew random values of their own on the CPU first, only to be overwritten (full size:
    # 16 to 27 s of each whisper_hf, whisper_compile and whisper_patched load on the H200)
    with torch.device("meta"):
        model = WhisperForConditionalGeneration(hf_config(source.dims, tokenizer(source.dims.n_vocab)))
    model.load_state_dict(hf_state_dict(source.state_dict()), strict=True, assign=True)
    model.tie_weights()  # assigned one by one, the output projection and the token embedding are one again
    return model.to(device=device, dtype=dtype).eval()


# -- tokens and decoding rules ----------------------------------------------------------------
@cache
def tokenizer(n_vocab: int, language: str = "en"):
    """openai-whisper's tokenizer (tiktoken, shipped with the package: no download); its token
    ids are transformers' too."""
    from whisper.tokenizer import get_tokenizer

    multilingual = n_vocab >= 51865
    return get_tokenizer(
        multilingual=multilingual,
        num_languages=n_vocab - 51765 - int(multilingual),
        language=language,
        task="transcribe",
    )


def initial_tokens(tok, prompt: list[int] | None, n_text_ctx: int) -> list[int]:
    """The decoder's prompt: the start of a transcript, no timestamps; in long-form after the
    previous text (its last n_text_ctx // 2 - 1 tokens)."""
    tokens = [*tok.sot_sequence, tok.no_timestamps]
    if prompt:
        tokens = [tok.sot_prev, *prompt[-(n_text_ctx // 2 - 1) :], *tokens]
    return tokens


def suppressed_tokens(tok) -> list[int]:
    """Tokens never sampled: non-speech symbols and the special tokens of the prompt."""
    special = [tok.transcribe, tok.translate, tok.sot, tok.sot_prev, tok.sot_lm]
    return sorted({*tok.non_speech_tokens, *special, *([tok.no_speech] if tok.no_speech is not None else [])})


def blank_tokens(tok) -> list[int]:
    """Tokens suppressed as the first one sampled: a blank and end-of-text."""
    return [*tok.encode(" "), tok.eot]


def count_tokens(tok, reference: str) -> int:
    return len(tok.encode(" " + reference.strip())) if reference.strip() else 0


class WhisperEngine(Engine):
    """What every Whisper engine declares: its decoder and its prompt."""

    long_form_rows = 1  # a long clip's windows are decoded in turn, one clip at a time
    windows_long_clips = True  # each through split_into_windows, when its turn comes

    @classmethod
    def decoder_shape(cls, architecture: dict) -> DecoderShape:
        hidden, heads = architecture["n_text_state"], architecture["n_text_head"]
        return DecoderShape(
            layers=architecture["n_text_layer"],
            hidden=hidden,
            inner=4 * hidden,
            heads=heads,
            kv_heads=heads,
            head_dim=hidden // heads,
            vocab=architecture["n_vocab"],
            gated_mlp=False,
            norms_per_layer=3,
            cross_positions=architecture["n_audio_ctx"],
        )

    @classmethod
    def context_tokens(cls, samples: int, language: str = "en") -> int:
        return 4  # <|startoftranscript|><|en|><|transcribe|><|notimestamps|>; long-form adds the prompt

    # -- shared by the engines that decode with openai-whisper's tokenizer held as self.tokenizer
    def _transcripts(self, tokens: torch.Tensor, clock: Clock) -> list[Transcript]:
        """Each row's tokens up to its end of text, and their text."""
        with clock.phase("detokenise"):
            lengths = generated_lengths(tokens, self.tokenizer.eot)
            ids = tokens.tolist()
            rows = [ids[i][:n] for i, n in enumerate(lengths)]
            texts = [self.tokenizer.decode(row).strip() for row in rows]
        return [Transcript(text, len(row), row) for text, row in zip(texts, rows, strict=True)]

    # -- long-form: a clip over 30 s, its windows one after another -----------------------------
    def transcribe_steps(self, audios: list[np.ndarray], target_tokens: list[int] | None, clock: Clock):
        """A batch with a clip over 30 s: each clip's windows in turn, pausing after each window
        (see Engine.transcribe_steps); a batch of short clips in one unit."""
        if all(len(audio) <= WINDOW_SAMPLES for audio in audios):
            return self.transcribe(audios, target_tokens, clock)
        transcripts = []
        for i, audio in enumerate(audios):
            target = target_tokens[i] if target_tokens is not None else None
            transcripts.append((yield from self.long_form_steps(audio, target, clock)))
        return transcripts

    def transcribe_long_form(self, audios: list[np.ndarray], target_tokens: list[int] | None, clock: Clock):
        """transcribe for a batch holding a clip over 30 s: every step at once."""
        return run_to_end(self.transcribe_steps(audios, target_tokens, clock))

    def long_form_steps(self, audio: np.ndarray, target: int | None, clock: Clock) -> Generator[None, None, Transcript]:
        """One clip over 30 s, a window per step (each engine says how it decodes a window)."""
        raise NotImplementedError

    def _windows_in_turn(self, windows: list, target: int | None, decode: Callable) -> Generator:
        """A long clip's 30 s windows one after another, each conditioned on the tokens decoded
        before it, pausing between windows: decode(j, window j's token target or None, the
        tokens so far) gives window j's Transcript."""
        targets = share_tokens(target, window_lengths(windows)) if target is not None else None
        tokens: list[int] = []
        texts = []
        for j in range(len(windows)):
            if j:
                yield
            transcript = decode(j, [targets[j]] if targets else None, tokens)
            tokens = tokens + transcript.tokens  # a new list: a decoding task may keep the one it was given
            texts.append(transcript.text)
        return Transcript(" ".join(t for t in texts if t), len(tokens), tokens)
