"""Whisper through transformers' WhisperForConditionalGeneration.generate, as shipped.

Greedy, English, no timestamps, SDPA attention; log-mel from transformers' feature extractor
on the host, as its processor makes it. generate is told openai-whisper's decoding rules
(the prompt, the tokens suppressed first and always: `_whisper`), so on the same weights it
decodes what openai_whisper decodes. Audio over 30 s goes as openai_whisper takes it:
30 s windows one after another, each prompted with the tokens decoded before it. Phases come
from hooks on the encoder: encode, then decode (the rest of generate, its per-step overhead
included). With random weights the same seed gives openai_whisper's weights, converted to
transformers' layout.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from bench.config import EngineConfig
from bench.engines import _whisper as wh
from bench.engines._fast.lengths import check_budget, length_matching_processor
from bench.engines.base import SAMPLE_RATE, Transcript, split_into_windows
from bench.pipeline.clock import Clock


@dataclass
class Config(EngineConfig):
    name: str = "whisper_hf"
    family: str = "whisper"
    max_new_tokens: int = 224  # per 30 s window (half Whisper's 448-token context, as openai-whisper)


def generation_config(tok, n_vocab: int):
    """openai-whisper's decoding rules in transformers' terms."""
    from transformers import GenerationConfig
    from whisper.tokenizer import LANGUAGES

    multilingual = is_multilingual(n_vocab)
    languages = list(LANGUAGES)[: n_vocab - 51765 - int(multilingual)] if multilingual else []
    # an English-only model (tiny.en) starts <|startoftranscript|><|notimestamps|>: no language
    # or task token, as openai-whisper prompts it. Its config must not name lang_to_id at all:
    # generate detects a language whenever the attribute exists, and an empty table made it
    # put token 0 ("!") into the prompt, which changed what tiny.en wrote on noise
    languages_and_tasks = {
        "lang_to_id": {f"<|{code}|>": tok.to_language_token(code) for code in languages},
        "task_to_id": {"transcribe": tok.transcribe, "translate": tok.translate},
    }
    return GenerationConfig(
        decoder_start_token_id=tok.sot,
        eos_token_id=tok.eot,
        pad_token_id=tok.eot,
        suppress_tokens=wh.suppressed_tokens(tok),
        begin_suppress_tokens=wh.blank_tokens(tok),
        no_timestamps_token_id=tok.no_timestamps,
        prev_sot_token_id=tok.sot_prev,
        is_multilingual=multilingual,
        **(languages_and_tasks if multilingual else {}),
    )


def is_multilingual(n_vocab: int) -> bool:
    return n_vocab >= 51865  # openai-whisper's test: the English-only vocabularies are 51864


class WhisperHF(wh.WhisperEngine):
    PHASES = ("features", "h2d", "encode", "decode", "detokenise")
    phase_hooks = True  # voxtral_compile's reason applies to whisper_compile: no hooks in a compiled region

    def load(self) -> None:
        from transformers import WhisperFeatureExtractor
        from transformers.utils import logging

        logging.set_verbosity_error()  # generate warns about settings openai-whisper's rules need
        arch = self.architecture if self.model_cfg.weights == "random" else None
        self.model = wh.hf_model(self.model_cfg, arch, self.device, self.dtype)
        config = self.model.config
        self.tokenizer = wh.tokenizer(config.vocab_size, self.language)
        self.model.generation_config = generation_config(self.tokenizer, config.vocab_size)
        multilingual = is_multilingual(config.vocab_size)
        self.language_kwargs = {"language": self.language, "task": "transcribe"} if multilingual else {}
        self.n_text_ctx = config.max_target_positions
        self.feature_extractor = WhisperFeatureExtractor(feature_size=config.num_mel_bins)
        self._clock: Clock | None = None
        if self.phase_hooks:
            encoder = self.model.model.encoder
            encoder.register_forward_pre_hook(self._encoder_starts)
            encoder.register_forward_hook(self._encoder_ends)

    def _encoder_starts(self, *_) -> None:
        if self._clock is not None:
            self._clock.begin("encode")

    def _encoder_ends(self, *_) -> None:
        if self._clock is not None:
            self._clock.end("encode")
            self._clock.begin("decode")  # the rest of generate, to its end

    def count_target_tokens(self, reference: str) -> int:
        return wh.count_tokens(self.tokenizer, reference)

    def pad_batch(self, audios: list[np.ndarray]) -> list[np.ndarray]:
        """Batches run as they come; whisper_compile pads them to one shape."""
        return audios

    def generate_kwargs(self) -> dict:
        return {}

    @torch.inference_mode()
    def transcribe(self, audios: list[np.ndarray], target_tokens: list[int] | None, clock: Clock) -> list[Transcript]:
        if any(len(audio) > wh.WINDOW_SAMPLES for audio in audios):
            return self.transcribe_long_form(audios, target_tokens, clock)
        tokens = self._generate(audios, target_tokens, None, clock)
        return self._transcripts(tokens, clock)

    @torch.inference_mode()
    def long_form_steps(self, audio: np.ndarray, target: int | None, clock: Clock):
        windows = split_into_windows(audio)

        def decode(j: int, targets: list[int] | None, prompt: list[int]) -> Transcript:
            return self._transcripts(self._generate([windows[j]], targets, prompt, clock), clock)[0]

        return (yield from self._windows_in_turn(windows, target, decode))

    def _generate(self, audios, targets: list[int] | None, prompt: list[int] | None, clock: Clock) -> torch.Tensor:
        rows = len(audios)
        audios = self.pad_batch(list(audios))
        initial = wh.initial_tokens(self.tokenizer, prompt, self.n_text_ctx)
        budget = min(self.engine_cfg.max_new_tokens, self.n_text_ctx - len(initial))
        check_budget(budget, targets, f"engine.max_new_tokens={budget} per 30 s window", "engine.max_new_tokens")
        with clock.phase("features"):
            features = self.feature_extractor(
                audios, sampling_rate=SAMPLE_RATE, return_tensors="pt", return_attention_mask=False
            ).input_features
        with clock.phase("h2d"):
            features = features.to(self.device, self.dtype)
        processors = []
        if targets is not None:
            padded = targets + [targets[-1]] * (len(audios) - rows)
            processors.append(length_matching_processor(padded, len(initial), self.tokenizer.eot, self.device))
        prompt_ids = (
            torch.tensor(initial[: -len(self.tokenizer.sot_sequence) - 1], device=self.device) if prompt else None
        )
        self._clock = clock
        try:
            with clock.phase("generate") if not self.phase_hooks else _Decode(clock):
                out = self.model.generate(
                    input_features=features,
                    **self.language_kwargs,
                    return_timestamps=False,
                    prompt_ids=prompt_ids,
                    max_new_tokens=budget,
                    do_sample=False,
                    num_beams=1,
                    logits_processor=processors or None,
                    **self.generate_kwargs(),
                )
        finally:
            self._clock = None
        new = out[:rows, -min(out.shape[1], budget) :] if out.shape[1] > budget else out[:rows]
        clock.count("decode_steps", new.shape[1])
        return new


class _Decode:
    """The decode phase: from the encoder's end (the hook opens it) to the end of generate."""

    def __init__(self, clock: Clock):
        self.clock = clock

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.clock.end("decode")
        return False


ENGINE = WhisperHF
