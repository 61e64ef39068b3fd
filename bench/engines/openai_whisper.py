"""Whisper through the openai-whisper package (large-v3 unless model= says another size):
greedy, no timestamps, batched. It was named whisper_large_v3, after its default model (which
keeps that name); the former name is still accepted and read in older run folders.

Audio longer than 30 s goes the way openai-whisper's `transcribe` takes it without
timestamps: consecutive 30 s windows decoded one after another, each prompted with the
text decoded so far (condition_on_previous_text), one clip at a time. Short clips are
decoded as rows of one batch. Weights: `pretrained` goes through whisper.load_model (its
own download and cache, or a checkpoint path); `random` builds the large-v3 dimensions
directly on the device. In length-matched mode a logit filter holds end-of-text back
until the reference's token count is reached, then forces it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from bench.config import EngineConfig
from bench.engines import _whisper as wh
from bench.engines._fast.lengths import check_budget, force_length
from bench.engines.base import SAMPLE_RATE, Transcript, split_into_windows
from bench.pipeline.clock import Clock

WINDOW_SAMPLES = 30 * SAMPLE_RATE


@dataclass
class Config(EngineConfig):
    name: str = "openai_whisper"
    family: str = "whisper"
    max_new_tokens: int = 224  # per 30 s window (half Whisper's 448-token context, as openai-whisper)


def _decoding_task_class():
    """DecodingTask subclass built lazily so importing this module stays cheap."""
    from whisper.decoding import DecodingTask, LogitFilter, SequenceRanker

    class OnlyCandidate(SequenceRanker):
        def rank(self, tokens, sum_logprobs):
            return [0 for _ in tokens]

    class ForceLength(LogitFilter):
        """End-of-text is forbidden before a row's target length and forced at it."""

        def __init__(self, targets: torch.Tensor, sample_begin: int, eot: int):
            self.targets, self.sample_begin, self.eot = targets, sample_begin, eot

        def apply(self, logits: torch.Tensor, tokens: torch.Tensor) -> None:
            force_length(logits, tokens.shape[1] - self.sample_begin, self.targets, self.eot, in_place=True)

    class BenchDecodingTask(DecodingTask):
        """Stock greedy decoding on audio features we computed (in any dtype), with phases."""

        def __init__(self, model, options, audio_features, clock: Clock, targets=None):
            super().__init__(model, options)
            # Greedy keeps one candidate per row, so ranking has nothing to choose. Stock's
            # ranker divides by the candidate's length and raises ZeroDivisionError for a
            # window decoded to nothing (end-of-text first: silence, an empty reference).
            self.sequence_ranker = OnlyCandidate()
            self._audio_features, self._clock = audio_features, clock
            if targets is not None:
                targets = torch.tensor(targets, device=audio_features.device)
                self.logit_filters.append(ForceLength(targets, self.sample_begin, self.tokenizer.eot))

        def _get_audio_features(self, mel):
            # Stock accepts only float16/float32 features; ours are in the run's dtype.
            return self._audio_features

        def _main_loop(self, audio_features, tokens):
            with self._clock.phase("decode"):
                out = super()._main_loop(audio_features, tokens)
            self._clock.count("decode_steps", out[0].shape[-1] - tokens.shape[-1])
            return out

    return BenchDecodingTask


def in_run_dtype(model, dtype: torch.dtype):
    """Weights in the run's dtype, except the LayerNorms', which stay in float32.

    openai-whisper's LayerNorm casts its input up to float32 and torch's layer norm will
    not take float32 input with bfloat16 or float16 parameters, so a model cast whole fails
    at its first norm. (whisper.load_model keeps every weight in float32 instead and casts
    each to the activations' dtype on every call; holding them in the run's dtype once is
    what the Voxtral engines get too.)
    """
    from whisper.model import LayerNorm

    model.to(dtype)
    for module in model.modules():
        if isinstance(module, LayerNorm):
            module.float()
    return model


class OpenAIWhisper(wh.WhisperEngine):
    PHASES = ("h2d", "features", "encode", "decode")

    def load(self) -> None:
        arch = self.architecture if self.model_cfg.weights == "random" else None
        model = wh.openai_model(self.model_cfg, arch, self.device)
        self.model = in_run_dtype(model, self.dtype).eval()
        self.tokenizer = wh.tokenizer(model.dims.n_vocab, self.language)
        self.task_class = _decoding_task_class()
        self.n_mels = model.dims.n_mels

    def count_target_tokens(self, reference: str) -> int:
        return wh.count_tokens(self.tokenizer, reference)

    @torch.inference_mode()
    def transcribe(self, audios: list[np.ndarray], target_tokens: list[int] | None, clock: Clock) -> list[Transcript]:
        if any(len(audio) > WINDOW_SAMPLES for audio in audios):
            return self.transcribe_long_form(audios, target_tokens, clock)
        features = self._encode(audios, clock)
        results = self._decode(features, target_tokens, clock)
        return [Transcript(r.text.strip(), len(r.tokens), list(r.tokens)) for r in results]

    @torch.inference_mode()
    def long_form_steps(self, audio: np.ndarray, target: int | None, clock: Clock):
        windows = split_into_windows(audio)

        # each window encoded when its turn comes, as openai-whisper's transcribe does: a step is
        # one window's work, and the clip holds one window's encoding at a time
        def decode(j: int, targets: list[int] | None, prompt: list[int]) -> Transcript:
            (result,) = self._decode(self._encode([windows[j]], clock), targets, clock, prompt=prompt)
            return Transcript(result.text.strip(), len(result.tokens), list(result.tokens))

        return (yield from self._windows_in_turn(windows, target, decode))

    def _encode(self, windows: list[np.ndarray], clock: Clock) -> torch.Tensor:
        from whisper.audio import log_mel_spectrogram

        with clock.phase("h2d"):
            padded = np.zeros((len(windows), WINDOW_SAMPLES), dtype=np.float32)
            for row, window in enumerate(windows):
                padded[row, : len(window)] = window
            audio = torch.from_numpy(padded).to(self.device, non_blocking=True)
        with clock.phase("features"):
            # one window at a time: the log-mel clamp uses the window's own maximum
            mel = torch.stack([log_mel_spectrogram(row, n_mels=self.n_mels) for row in audio]).to(self.dtype)
        with clock.phase("encode"):
            return self.model.encoder(mel)

    def _decode(self, features, targets: list[int] | None, clock: Clock, prompt: list[int] | None = None):
        from whisper.decoding import DecodingOptions

        sample_len = self.engine_cfg.max_new_tokens
        check_budget(
            sample_len, targets, f"engine.max_new_tokens={sample_len} per 30 s window", "engine.max_new_tokens"
        )
        options = DecodingOptions(
            task="transcribe",
            language=self.language,
            temperature=0.0,
            without_timestamps=True,
            fp16=False,  # dtype is ours: the features above are already in it
            sample_len=sample_len,
            prompt=prompt or None,  # the task keeps its last n_text_ctx // 2 - 1 tokens, as transcribe does
        )
        task = self.task_class(self.model, options, features, clock, targets or None)
        return task.run(features)


ENGINE = OpenAIWhisper
