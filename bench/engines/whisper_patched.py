"""Whisper through the fast-decode core over the same weights, every change a named patch.

It runs transformers' WhisperForConditionalGeneration modules (encoder, decoder layers,
output projection) with the same glue as voxtral_patched, from the same core
(bench/engines/_fast): a static self-attention cache per batch shape with the
cross-attention's keys and values computed once per batch beside it, the greedy loop with
end-of-sequence read back a step late, the decode step compiled (one function for every
decoder layer under a CUDA graph) and captured as a CUDA graph. What is Whisper's is here:
log-mel on the device, the encoder, the prompt and openai-whisper's decoding rules (the
tokens suppressed). Each entry of PATCHES can be switched off; with a patch off that step
runs as whisper_hf runs it. On the same weights it decodes openai_whisper's tokens (the
tests check every patch on and each off alone, and each compile scope).
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field

import numpy as np
import torch

from bench.config import EngineConfig
from bench.engines import _whisper as wh
from bench.engines._fast.decoder import FastDecoder
from bench.engines._fast.engine import FastDecodeEngine
from bench.engines._fast.fusion import fuse_self_attention
from bench.engines._fast.layers import CompiledLayers
from bench.engines._fast.lengths import check_budget
from bench.engines._fast.options import CompileScope, DecodeOptions
from bench.engines._fast.transformers_lm import TransformersEncoderDecoder
from bench.engines.base import SAMPLE_RATE, Transcript, split_into_windows
from bench.pipeline.clock import Clock

PATCHES = {
    "device_features": "log-mel computed on the device for the whole batch at once (off: transformers' feature "
    "extractor on the host, as whisper_hf)",
    "batched_encoder": "every clip of a short batch through the encoder in one call (off: one call per clip; a "
    "long clip's windows are encoded one per step either way)",
    "static_cache": "a preallocated static self-attention cache reused across batches (off: a DynamicCache)",
    "sync_free_loop": "end-of-sequence copied to host memory after each step without blocking, and read one "
    "step later: the GPU never waits for the check, and a finished batch runs one step more at most (off: read "
    "back after every step, as generate does)",
    "fused_projections": "each decoder layer's self-attention q, k and v in one matrix product over their stacked "
    "weights (off: one product each)",
    "packed_linears": "on the CPU in float32, every linear layer of the decoder and the output projection one "
    "oneDNN product over its weight reordered once at load, opaque to the compiler (off: nn.Linear through the "
    "wheel's BLAS, MKL on x86; inert on CUDA and in other dtypes)",
    "attention_window": "a decode step attends the cache slots in use: windows doubling from 128 slots to the "
    "static cache's capacity, the smallest holding every slot written, each its own compiled step and CUDA graph, "
    "all made in the warm-up (off: every step reads the whole capacity; inert without static_cache)",
    "compiled_step": "the decode step through torch.compile: under a CUDA graph one compiled function for every "
    "decoder layer (engine.compile_scope, as voxtral_patched's), elsewhere the whole step (inert without "
    "static_cache)",
    "compiled_prefill": "the encoder's layers (one compiled function for all, as voxtral_patched's) and the "
    "prefill (per layer or whole, as the step) of short batches through torch.compile, one graph per batch shape "
    "compiled in the warm-up (a long clip's windows, whose prompts vary, run as shipped; inert without "
    "static_cache)",
    "cuda_graph": "on CUDA, the decode step captured once as a CUDA graph and replayed (inert without "
    "static_cache, and on the CPU)",
}


@dataclass
class Config(EngineConfig):
    name: str = "whisper_patched"
    family: str = "whisper"
    patches: list[str] = field(default_factory=lambda: list(PATCHES))
    max_new_tokens: int = 224  # per 30 s window (half Whisper's 448-token context, as openai-whisper)
    # what compiled_step compiles, as voxtral_patched's: "layers" (one graph shared by the decoder
    # layers: a small cold start), "step" (the whole step), or "auto": layers under a CUDA graph,
    # else step
    compile_scope: CompileScope = CompileScope.auto


class WhisperPatched(FastDecodeEngine, wh.WhisperEngine):
    PATCHES = PATCHES
    STOCK = "whisper_hf"  # the same weights through transformers as shipped: the tokens to equal
    PHASES = ("h2d", "features", "encode", "prefill", "decode", "detokenise")
    COMPILES = True  # compiled_step

    def load(self) -> None:
        from transformers import WhisperFeatureExtractor
        from whisper.audio import mel_filters

        self.switch_on_patches()
        arch = self.architecture if self.model_cfg.weights == "random" else None
        self.model = wh.hf_model(self.model_cfg, arch, self.device, self.dtype)
        config = self.model.config
        if "fused_projections" in self.on:
            fuse_self_attention(self.model.model.decoder.layers)
        self.pack_decoder(self.model.model.decoder, self.model, "proj_out")  # after fusing: the fused products too
        self.tokenizer = wh.tokenizer(config.vocab_size, self.language)
        self.n_text_ctx = config.max_target_positions
        self.feature_extractor = WhisperFeatureExtractor(feature_size=config.num_mel_bins)
        self.mel_filters = mel_filters(self.device, config.num_mel_bins)  # openai-whisper's own
        self.window = torch.hann_window(wh.N_FFT, device=self.device)
        vocab = config.vocab_size
        self.suppressed = torch.zeros(vocab, dtype=torch.bool, device=self.device)
        self.suppressed[wh.suppressed_tokens(self.tokenizer)] = True
        self.blank = self.suppressed.clone()
        self.blank[wh.blank_tokens(self.tokenizer)] = True
        self.rows_for_short = 0  # the rows short batches are padded to (see plan)
        self.decoder = self.make_decoder(cuda_graph=self.device.type == "cuda")
        # compiled_prefill: the encoder's layers through one compiled function (short batches only)
        encoder_layers = self.model.model.encoder.layers
        self.encoder_layers = CompiledLayers(encoder_layers) if self.decoder.options.compiled_prefill else None
        self.count_graphs_from_now()

    def make_decoder(self, cuda_graph: bool) -> FastDecoder:
        """The fast-decode core around Whisper's decoder (cuda_graph: whether graphs can be
        captured here, as on a CUDA device)."""
        config = self.model.config
        lm = TransformersEncoderDecoder(
            self.model.model.decoder, self.model.proj_out, config, encoder_positions=config.max_source_positions
        )
        device = torch.device("cuda") if cuda_graph else torch.device("cpu")
        options = DecodeOptions.from_patches(self.on, device, self.engine_cfg.compile_scope)
        eot = self.tokenizer.eot
        return FastDecoder(lm, options, self.device, eos=eot, pad=eot, logit_filter=self._suppress)

    def _suppress(self, logits: torch.Tensor, step: int) -> torch.Tensor:
        """openai-whisper's rules: never non-speech or prompt tokens; not a blank or end-of-text first."""
        return logits.masked_fill(self.blank if step == 0 else self.suppressed, -float("inf"))

    # -- batch shapes: short batches padded to the run's most rows; a long clip's windows one at a time
    def plan(self, batches: list[list[int]]) -> None:
        short = [len(lengths) for lengths in batches if max(lengths) <= wh.WINDOW_SAMPLES]
        self.rows_for_short = max([self.rows_for_short, *short])
        self.allow_recompiles_for(batches)

    def batch_shape(self, lengths: list[int]):
        if not self.decoder.options.static_cache:
            return None
        if max(lengths) > wh.WINDOW_SAMPLES:
            return 1, self.n_text_ctx  # windows one after another, each after the text before it
        return self.padded_rows(self.rows_for_short, len(lengths)), 4 + self.engine_cfg.max_new_tokens

    def after_out_of_memory(self) -> None:
        self.rows_for_short = 0  # the halves get a cache (and graph) of their own size
        self.decoder.forget_shapes()
        super().after_out_of_memory()

    def count_target_tokens(self, reference: str) -> int:
        return wh.count_tokens(self.tokenizer, reference)

    # -- inputs and encoder ---------------------------------------------------------------------
    def log_mel(self, audio: torch.Tensor) -> torch.Tensor:
        """(rows, 480000) -> (rows, mels, 3000), each row as openai-whisper's log_mel_spectrogram
        makes it (its floor relative to the row's own maximum)."""
        stft = torch.stft(audio, wh.N_FFT, wh.HOP, window=self.window, return_complex=True)
        power = stft[..., :-1].abs() ** 2
        log_spec = torch.clamp(self.mel_filters @ power, min=1e-10).log10()
        log_spec = torch.maximum(log_spec, log_spec.amax(dim=(1, 2), keepdim=True) - 8.0)
        return (log_spec + 4.0) / 4.0

    def _encode(self, windows: list[np.ndarray], clock: Clock, compiled: bool = False) -> torch.Tensor:
        if "device_features" in self.on:
            with clock.phase("h2d"):
                padded = np.zeros((len(windows), wh.WINDOW_SAMPLES), dtype=np.float32)
                for row, window in enumerate(windows):
                    padded[row, : len(window)] = window
                audio = torch.from_numpy(padded).to(self.device, non_blocking=True)
            with clock.phase("features"):
                features = self.log_mel(audio).to(self.dtype)
        else:
            with clock.phase("features"):
                features = self.feature_extractor(
                    windows, sampling_rate=SAMPLE_RATE, return_tensors="pt", return_attention_mask=False
                ).input_features
            with clock.phase("h2d"):
                features = features.to(self.device, self.dtype)
        encoder = self.model.model.encoder
        fused = self.encoder_layers.compiled() if compiled and self.encoder_layers else nullcontext()
        with clock.phase("encode"), fused:
            if "batched_encoder" in self.on:
                return encoder(features).last_hidden_state
            return torch.cat([encoder(f[None]).last_hidden_state for f in features])

    # -- decoding ---------------------------------------------------------------------------------
    @torch.inference_mode()
    def transcribe(self, audios: list[np.ndarray], target_tokens: list[int] | None, clock: Clock) -> list[Transcript]:
        if any(len(audio) > wh.WINDOW_SAMPLES for audio in audios):
            return self.transcribe_long_form(audios, target_tokens, clock)
        rows = len(audios)
        if self.decoder.options.static_cache:
            padded_rows, cache_len = self.batch_shape([len(a) for a in audios])
            self.rows_for_short = padded_rows  # without a plan: at least as many rows as before
            self.decoder.use_shape(padded_rows, cache_len)
            audios = list(audios) + [audios[-1]] * (padded_rows - rows)
            if target_tokens is not None:
                target_tokens = list(target_tokens) + [target_tokens[-1]] * (padded_rows - rows)
        tokens = self._decode(self._encode(audios, clock, compiled=True), target_tokens, None, clock)
        return self._transcripts(tokens[:rows], clock)

    @torch.inference_mode()
    def long_form_steps(self, audio: np.ndarray, target: int | None, clock: Clock):
        windows = split_into_windows(audio)

        # each window encoded when its turn comes: a step (what bench.serve runs between other
        # batches) is one window's work, and the clip holds one window's encoding at a time
        def decode(j: int, targets: list[int] | None, prompt: list[int]) -> Transcript:
            encoded = self._encode([windows[j]], clock)
            if self.decoder.options.static_cache:  # each window: other batches may run between them
                self.decoder.use_shape(1, self.n_text_ctx)
            return self._transcripts(self._decode(encoded, targets, prompt, clock), clock)[0]

        return (yield from self._windows_in_turn(windows, target, decode))

    def _decode(self, encoded: torch.Tensor, targets: list[int] | None, prompt, clock: Clock) -> torch.Tensor:
        initial = wh.initial_tokens(self.tokenizer, prompt, self.n_text_ctx)
        budget = min(self.engine_cfg.max_new_tokens, self.n_text_ctx - len(initial))
        check_budget(budget, targets, f"engine.max_new_tokens={budget} per 30 s window", "engine.max_new_tokens")
        rows = encoded.shape[0]
        with clock.phase("prefill"):  # the prompt's embeddings; the core times its forward as prefill too
            ids = torch.tensor([initial] * rows, device=self.device)
            embeds = self.decoder.model.embed(ids)
        self.decoder.model.encoder_states = encoded
        mask = torch.ones_like(ids)
        # a long clip's windows carry prompts of any length: their prefill is not compiled
        return self.decoder.generate(embeds, mask, targets, budget, clock, compile_prefill=not prompt)

    def streams(self, lengths: list[int]) -> bool:
        return all(n <= wh.WINDOW_SAMPLES for n in lengths)  # a long clip's windows run one by one

    def text_of(self, token_ids: list[int]) -> str:
        ended = token_ids.index(self.tokenizer.eot) if self.tokenizer.eot in token_ids else len(token_ids)
        return self.tokenizer.decode(token_ids[:ended]).strip()

    def report(self) -> dict:
        return self.decode_report()


ENGINE = WhisperPatched
