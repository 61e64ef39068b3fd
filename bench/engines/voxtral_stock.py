"""Voxtral exactly as transformers ships it: processor transcription request + generate.

Greedy (one beam, no sampling), batched; audio over 30 s becomes several 30 s chunks of
375 audio tokens each, as the processor does. Phases are marked with forward hooks on
the audio tower and the language model, which change nothing in what runs:
encode (audio tower), merge (projector + placeholder merge), prefill (the first language
model call), decode (everything after it until generate returns: per-step overhead
included, since that is what a user waits for).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from bench.config import EngineConfig
from bench.engines import _voxtral as vox
from bench.engines._fast.lengths import generated_lengths, length_matching_processor
from bench.engines._paused_call import beside, pause_after_layers, pause_each_token, paused_call
from bench.engines.base import Transcript
from bench.pipeline.clock import Clock


@dataclass
class Config(EngineConfig):
    name: str = "voxtral_stock"
    family: str = "voxtral"
    max_new_tokens: int = 500  # per 30 s chunk of the batch's longest clip


class VoxtralStock(vox.VoxtralEngine):
    PHASES = ("features", "h2d", "encode", "merge", "prefill", "decode", "detokenise")
    phase_hooks = True
    # bench.serve may run other batches inside a long clip's generate (see transcribe_steps):
    # nothing a batch holds mid-generate is shared with another here (a DynamicCache each)
    PAUSES_IN_GENERATE = True

    def load(self) -> None:
        self.processor = vox.load_processor(self.model_cfg)
        arch = self.architecture if self.model_cfg.weights == "random" else None
        self.model = vox.load_model(self.model_cfg, arch, self.device, self.dtype)
        self._clock: Clock | None = None
        if self.phase_hooks:
            self._add_phase_hooks()

    def _add_phase_hooks(self) -> None:
        def mark(hook):
            return lambda *args: hook(args[1]) if self._clock is not None else None

        def audio_start(_):
            self._clock.begin("encode")

        def audio_end(_):
            self._clock.end("encode")
            self._clock.begin("merge")

        def text_start(_):
            self._clock.end("merge")
            if not self._clock.is_open("decode") and not self._seen_prefill:
                self._clock.begin("prefill")

        def text_end(_):
            if self._clock.is_open("prefill"):
                self._clock.end("prefill")
                self._seen_prefill = True
                self._clock.begin("decode")

        inner = self.model.model
        inner.audio_tower.register_forward_pre_hook(mark(audio_start))
        inner.audio_tower.register_forward_hook(mark(audio_end))
        inner.language_model.register_forward_pre_hook(mark(text_start))
        inner.language_model.register_forward_hook(mark(text_end))

    def count_target_tokens(self, reference: str) -> int:
        return vox.count_tokens(self.processor.tokenizer, reference)

    def prepare(self, audios: list[np.ndarray]):
        """The processor's transcription request: prompt ids and log-mel features, on the host."""
        return vox.transcription_request(self.processor, audios, self.language, self.model_cfg.id)

    def generate_kwargs(self, batch_rows: int) -> dict:
        return {}

    def transcribe(self, audios: list[np.ndarray], target_tokens: list[int] | None, clock: Clock) -> list[Transcript]:
        return self._transcribe(audios, target_tokens, clock, pause=None)

    def transcribe_steps(self, audios: list[np.ndarray], target_tokens: list[int] | None, clock: Clock):
        """A batch holding a clip over 30 s is run as steps: the processor's work (host only) on a
        thread of its own while other batches run, then generate on a helper thread
        (bench.engines._paused_call) that pauses after each layer of the audio encoder and of the
        prefill, and after every token (a transcript is one sequence, however long). A batch of
        short clips is one unit, as for Whisper."""
        if not self.PAUSES_IN_GENERATE or all(vox.n_chunks(a) == 1 for a in audios):
            return (yield from super().transcribe_steps(audios, target_tokens, clock))
        with clock.phase("features"):
            inputs = yield from beside(lambda: self.prepare(audios))
        return (yield from paused_call(lambda pause: self._transcribe(audios, target_tokens, clock, pause, inputs)))

    def _pauses_in_first_token(self, pause) -> list:
        """Pauses after each audio encoder layer (every chunk of the batch through it) and each
        language-model layer of the prefill (the whole prompt through it): the first token's work,
        seconds for half an hour of audio, in as many steps as the two stacks have layers."""
        inner = self.model.model
        encoder = pause_after_layers(inner.audio_tower.layers, pause)
        prefill = pause_after_layers(inner.language_model.layers, pause, when=lambda hidden: hidden.shape[1] > 1)
        return encoder + prefill

    @torch.inference_mode()
    def _transcribe(
        self, audios, target_tokens: list[int] | None, clock: Clock, pause, inputs=None
    ) -> list[Transcript]:
        """inputs: the processor's, when prepared already (transcribe_steps, where pad_batch pads
        nothing: voxtral_compile does not pause)."""
        budget = vox.token_budget(self.engine_cfg.max_new_tokens, audios, target_tokens)
        audios, rows = self.pad_batch(list(audios))
        if inputs is None:
            with clock.phase("features"):
                inputs = self.prepare(audios)
        with clock.phase("h2d"):
            inputs = inputs.to(self.device)
            inputs["input_features"] = inputs["input_features"].to(self.dtype)
        prompt_length = inputs["input_ids"].shape[1]
        processors = []
        if target_tokens is not None:
            padded_targets = target_tokens + [target_tokens[-1]] * (len(audios) - rows)
            processors.append(length_matching_processor(padded_targets, prompt_length, vox.EOS, self.device))
        self._clock, self._seen_prefill = clock, False
        if pause:
            pause = self._keeping_phase_marks(pause)
        criteria, hooks = ([pause_each_token(pause)], self._pauses_in_first_token(pause)) if pause else (None, [])
        try:
            with clock.phase("generate") if not self.phase_hooks else _nothing():
                out = self.model.generate(
                    **inputs,
                    max_new_tokens=budget,
                    do_sample=False,
                    num_beams=1,
                    logits_processor=processors or None,
                    stopping_criteria=criteria,
                    **self.generate_kwargs(len(audios)),
                )
            clock.end("decode")
        finally:
            self._clock = None
            for hook in hooks:
                hook.remove()
        clock.count("decode_steps", max(0, out.shape[1] - prompt_length - 1))  # after the prefill's token
        with clock.phase("detokenise"):
            new_tokens = out[:rows, prompt_length:]
            lengths = generated_lengths(new_tokens, vox.EOS)
            texts = self.processor.batch_decode(new_tokens, skip_special_tokens=True)
        ids = new_tokens.tolist()
        return [Transcript(text.strip(), n, ids[i][:n]) for i, (text, n) in enumerate(zip(texts, lengths, strict=True))]

    def _keeping_phase_marks(self, pause):
        """pause, this batch's phase marks (the hooks' clock) put back after it: a batch run in
        the pause marks its own."""

        def paused() -> None:
            marks = self._clock, self._seen_prefill
            pause()
            self._clock, self._seen_prefill = marks

        return paused

    def pad_batch(self, audios: list[np.ndarray]) -> tuple[list[np.ndarray], int]:
        """Stock runs batches as they come; voxtral_compile pads them to one shape."""
        return audios, len(audios)


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


ENGINE = VoxtralStock
