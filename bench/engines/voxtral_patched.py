"""Voxtral through our own fast path over the same weights, every change a named patch.

It uses the stock modules of VoxtralForConditionalGeneration (audio tower, projector,
language model, lm_head) and replaces only the glue around them, in the spirit of
gpt-fast. What is Voxtral's is here: log-mel on the device, the transcription prompt, the
audio encoder and the placeholder merge. Decoding is the fast-decode core's
(bench/engines/_fast: static cache, compiled step, CUDA graph, the greedy loop), which any
decoder can use; fused_projections alone reaches inside the model, stacking each layer's
projection weights (_fast/fusion.py). Each entry of PATCHES can be switched off
(`engine.patches=[...]` lists the ones on); with a patch off, that step runs as stock
transformers runs it, so the speed-up of each patch can be measured on its own. With
every patch on or off, the tokens equal voxtral_stock's (checked in float32 on the CPU by
the tests).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field

import numpy as np
import torch

from bench.config import EngineConfig
from bench.engines import _voxtral as vox
from bench.engines._fast.decoder import FastDecoder
from bench.engines._fast.engine import FastDecodeEngine
from bench.engines._fast.fusion import fuse_projections
from bench.engines._fast.grouped_attention import use_grouped_attention
from bench.engines._fast.layers import CompiledLayers
from bench.engines._fast.lengths import generated_lengths
from bench.engines._fast.options import CompileScope, DecodeOptions
from bench.engines._fast.transformers_lm import TransformersLM
from bench.engines.base import Transcript, run_to_end
from bench.pipeline.clock import Clock

PATCHES = {
    "device_features": "log-mel computed on the device from the waveform; stock encodes each clip to WAV, "
    "decodes it again and runs the STFT on the host (the 16-bit PCM rounding of that round trip is kept)",
    "batched_encoder": "all 30 s chunks of the batch through the audio encoder in one call (off: one call per chunk)",
    "merge_no_sync": "audio embeddings placed by a cumulative-sum gather and a where: no boolean-mask count "
    "check and no host sync (off: stock's get_placeholder_mask + masked_scatter)",
    "static_cache": "a preallocated static KV cache reused across batches (off: DynamicCache, grown every step)",
    "sync_free_loop": "end-of-sequence copied to host memory after each step without blocking, and read one "
    "step later: the GPU never waits for the check, and a finished batch runs one step more at most (off: read "
    "back after every step, as generate does)",
    "fused_projections": "each decoder layer's q, k and v projections in one matrix product over their stacked "
    "weights, and gate and up in another (off: one product each, as stock)",
    "grouped_attention": "a decode step's attention reads each of the 8 key-value heads once for its 4 query "
    "heads (the query heads of one key-value head stand as its queries); off: transformers' SDPA path, which "
    "under torch.compile, with the static cache's mask, copies every layer's keys and values once per query head "
    "each step (bench/engines/_fast/grouped_attention.py)",
    "packed_linears": "on the CPU in float32, every linear layer of the decoder and the output projection one "
    "oneDNN product over its weight reordered once at load, opaque to the compiler (off: nn.Linear through the "
    "wheel's BLAS, MKL on x86; inert on CUDA and in other dtypes)",
    "attention_window": "a decode step attends the cache slots in use: windows doubling from 128 slots to the "
    "static cache's capacity, the smallest holding every slot written, each its own compiled step and CUDA graph, "
    "all made in the warm-up (off: every step reads the whole capacity; inert without static_cache)",
    "chunked_prefill": "a prompt over 512 positions (a clip over 30 s) prefilled 512 at a time (what does not "
    "fill a whole piece first), each piece attending the cache the pieces before it wrote: the prefill's attention "
    "holds a piece's scores over the cache, not the whole prompt's (quadratic in the clip's length), and bench.serve "
    "runs other batches between the pieces (off: the whole prompt in one forward, as stock)",
    "compiled_step": "the decode step through torch.compile, which fuses its many small kernels (norms, rotary, "
    "residuals): under a CUDA graph only its decoder layers, through one compiled function shared by all, so the "
    "cold start compiles one layer; where the host runs every step (CPU, cuda_graph off) the whole step, which also "
    "removes transformers' Python around the layers. Inductor's on-disk cache leaves the compile to a host's first "
    "run (inert without static_cache, whose fixed shapes it needs)",
    "compiled_prefill": "the audio encoder's layers and the prefill through torch.compile, one graph per batch "
    "shape compiled in the warm-up: at batch 1 both are hundreds of small kernels for a few ms of GPU work, "
    "launch-bound. Per layer (one compiled function for all the layers of a stack, as compiled_step's under a "
    "graph), so the cold start compiles a layer per stack and shape, not the model; the prefill compiles whole "
    "where the step does (inert without static_cache)",
    "cuda_graph": "on CUDA, the decode step captured once as a CUDA graph and replayed (inert without "
    "static_cache, and on the CPU)",
}


@dataclass
class Config(EngineConfig):
    name: str = "voxtral_patched"
    family: str = "voxtral"
    patches: list[str] = field(default_factory=lambda: list(PATCHES))
    max_new_tokens: int = 500  # per 30 s chunk of the batch's longest clip
    # a batch's static cache holds at least this many 30 s chunks (its longest clip's, if more);
    # no more than that: a step reads the whole cache (up to twice what is in use with attention_window)
    max_chunks: int = 1
    # what compiled_step compiles: "layers" (one graph shared by the decoder layers: a small
    # cold start), "step" (the whole step), or "auto": layers under a CUDA graph, else step
    compile_scope: CompileScope = CompileScope.auto


class VoxtralPatched(FastDecodeEngine, vox.VoxtralEngine):
    PATCHES = PATCHES
    STOCK = "voxtral_stock"  # the same weights through transformers as shipped: the tokens to equal
    PHASES = ("h2d", "features", "encode", "merge", "prefill", "decode", "detokenise")
    COMPILES = True  # compiled_step

    def load(self) -> None:
        self.switch_on_patches()
        self.processor = vox.load_processor(self.model_cfg)
        arch = self.architecture if self.model_cfg.weights == "random" else None
        self.model = vox.load_model(self.model_cfg, arch, self.device, self.dtype)
        inner = self.model.model
        if "fused_projections" in self.on:
            fuse_projections(inner.language_model)
        if "grouped_attention" in self.on:  # the language model's layers only: the audio tower has no groups
            use_grouped_attention(inner.language_model.config)
        self.pack_decoder(inner.language_model, self.model, "lm_head")  # after fusing: the fused products too
        self.language_ids = self.processor.tokenizer.encode(f"lang:{self.language}", add_special_tokens=False)
        fe = self.processor.feature_extractor
        self.mel_filters = torch.from_numpy(fe.mel_filters).to(self.device, torch.float32)
        self.window = torch.hann_window(fe.n_fft, device=self.device)
        self.n_fft, self.hop = fe.n_fft, fe.hop_length
        self.rows_for: dict[int, int] = {}  # chunks -> the rows batches of that many chunks are padded to
        self.decoder = self.make_decoder(cuda_graph=self.device.type == "cuda")
        # compiled_prefill: the audio tower's layers through one compiled function, as the prefill's
        self.encoder_layers = (
            CompiledLayers(inner.audio_tower.layers) if self.decoder.options.compiled_prefill else None
        )
        self.count_graphs_from_now()

    def make_decoder(self, cuda_graph: bool) -> FastDecoder:
        """The fast-decode core around Voxtral's language model and lm_head (cuda_graph: whether
        graphs can be captured here, as on a CUDA device)."""
        inner = self.model.model
        lm = TransformersLM(
            inner.language_model, self.model.lm_head, inner.get_input_embeddings(), inner.config.text_config
        )
        device = torch.device("cuda") if cuda_graph else torch.device("cpu")
        options = DecodeOptions.from_patches(self.on, device, self.engine_cfg.compile_scope)
        decoder = FastDecoder(lm, options, self.device, eos=vox.EOS, pad=vox.PAD)
        decoder.use_shape(0, vox.static_cache_len(self.engine_cfg.max_chunks, self.engine_cfg.max_new_tokens))
        return decoder

    def _chunks(self, lengths: list[int]) -> int:
        """30 s chunks a batch's static cache holds: its longest clip's, at least engine.max_chunks."""
        return max(self.engine_cfg.max_chunks, *(vox.chunks_in(n) for n in lengths))

    def plan(self, batches: list[list[int]]) -> None:
        # pad every batch to the largest batch of its chunk count: one cache and graph per count
        for lengths in batches:
            chunks = self._chunks(lengths)
            self.rows_for[chunks] = max(self.rows_for.get(chunks, 0), len(lengths))
        self.allow_recompiles_for(batches)

    def batch_shape(self, lengths: list[int]):
        if not self.decoder.options.static_cache:
            return None  # a DynamicCache grows every step: nothing is compiled or captured for it
        chunks = self._chunks(lengths)
        rows = self.padded_rows(self.rows_for.get(chunks, 0), len(lengths))
        if not self.decoder.options.compiled_prefill:
            return rows, chunks
        # the compiled prefill's input: the prompt holds the longest clip's chunks, which may be
        # fewer than the cache's (engine.max_chunks); and the compiled encoder's: every 30 s
        # chunk of the padded batch (or one at a time)
        prompt_chunks = max(vox.chunks_in(n) for n in lengths)
        padded = [*lengths, *[lengths[-1]] * (rows - len(lengths))]
        encoded = sum(vox.chunks_in(n) for n in padded) if "batched_encoder" in self.on else 1
        return rows, chunks, prompt_chunks, encoded

    @property
    def capacity_chunks(self) -> int:
        """30 s chunks the current batch shape's cache holds."""
        return (self.max_cache_len - vox.static_cache_len(0, self.engine_cfg.max_new_tokens)) // (
            vox.TOKENS_PER_CHUNK + self.engine_cfg.max_new_tokens
        )

    @property
    def max_cache_len(self) -> int:
        return self.decoder.cache_len

    def after_out_of_memory(self) -> None:
        # the halves get a cache (and graph) of their own size
        self.rows_for = {}
        self.decoder.forget_shapes()
        super().after_out_of_memory()

    def count_target_tokens(self, reference: str) -> int:
        return vox.count_tokens(self.processor.tokenizer, reference)

    # -- inputs -----------------------------------------------------------------------
    def log_mel(self, audio: torch.Tensor) -> torch.Tensor:
        """One clip -> (chunks, 128, 3000), as the processor computes it (Whisper's recipe)."""
        return scaled(list(self.log_mel_chunks(audio)))

    def log_mel_chunks(self, audio: torch.Tensor) -> Iterator[torch.Tensor]:
        """One clip's log10 mel power a 30 s chunk at a time, (128, 3000) each, before the floor
        (scaled): the values of one STFT over the whole clip, as the processor computes it. A
        chunk's frames read the samples on either side of it, as the whole clip's centred frames
        do (its ends reflected, as torch.stft centres)."""
        # Stock writes the clip as 16-bit WAV and reads it back. Keep that quantisation as
        # the libsndfile in soundfile's wheels does it (scale 32768, round down, clip), so
        # features and tokens stay identical; a test checks it against the processor.
        audio = (torch.floor(audio.double() * 32768).clamp(-32768, 32767) / 32768).float()
        chunks, half = vox.n_chunks(audio), self.n_fft // 2
        audio = torch.nn.functional.pad(audio, (0, chunks * vox.CHUNK_SAMPLES - audio.shape[0]))
        audio = torch.nn.functional.pad(audio[None, None], (half, half), mode="reflect")[0, 0]
        for k in range(chunks):
            part = audio[k * vox.CHUNK_SAMPLES : (k + 1) * vox.CHUNK_SAMPLES + 2 * half]
            stft = torch.stft(part, self.n_fft, self.hop, window=self.window, center=False, return_complex=True)
            power = (stft[..., :-1].abs() ** 2).contiguous()  # 3000 frames: the next chunk's first is not ours
            yield torch.clamp(self.mel_filters.T @ power, min=1e-10).log10()

    def _inputs(self, audios: list[np.ndarray], clock: Clock, pause: bool):
        """Prompt ids, attention mask and features on the device (with pause: a step per chunk of
        device_features' log-mel)."""
        if "device_features" not in self.on:
            with clock.phase("features"):
                inputs = vox.transcription_request(self.processor, audios, self.language, self.model_cfg.id)
            with clock.phase("h2d"):
                inputs = inputs.to(self.device)
            return inputs["input_ids"], inputs["attention_mask"], inputs["input_features"].to(self.dtype)
        with clock.phase("h2d"):
            prompts = [vox.transcription_prompt(vox.n_chunks(a), self.language_ids) for a in audios]
            length = max(map(len, prompts))
            ids = np.full((len(prompts), length), vox.PAD, dtype=np.int64)  # left padding, as the processor
            mask = np.zeros((len(prompts), length), dtype=np.int64)
            for row, prompt in enumerate(prompts):
                ids[row, length - len(prompt) :], mask[row, length - len(prompt) :] = prompt, 1
            ids = torch.from_numpy(ids).to(self.device, non_blocking=True)
            mask = torch.from_numpy(mask).to(self.device, non_blocking=True)
            waves = [torch.from_numpy(a).to(self.device, non_blocking=True) for a in audios]
        if not pause:
            with clock.phase("features"):
                return ids, mask, torch.cat([self.log_mel(w) for w in waves]).to(self.dtype)
        clips = []
        for wave in waves:
            parts, spectra = self.log_mel_chunks(wave), []
            for _ in range(vox.n_chunks(wave)):
                with clock.phase("features"):
                    spectra.append(next(parts))
                yield
            with clock.phase("features"):
                clips.append(scaled(spectra))
        return ids, mask, torch.cat(clips).to(self.dtype)

    # -- encoder and merge ------------------------------------------------------------
    def _encoded(self, features: torch.Tensor, clock: Clock, pause: bool):
        """The audio encoder's output for every chunk: in one call (batched_encoder), else, and
        with pause, a chunk per call (a step each with pause)."""
        encoder = self.model.model.audio_tower
        compiled = self.encoder_layers.compiled if self.encoder_layers else nullcontext
        if "batched_encoder" in self.on and not pause:
            with clock.phase("encode"), compiled():
                return encoder(features).last_hidden_state
        hidden = []
        for chunk in features:
            with clock.phase("encode"), compiled():
                hidden.append(encoder(chunk[None]).last_hidden_state)
            if pause:
                yield
        return torch.cat(hidden)

    def _embeddings(self, ids: torch.Tensor, features: torch.Tensor, clock: Clock, pause: bool):
        inner = self.model.model
        hidden = yield from self._encoded(features, clock, pause)
        with clock.phase("merge"):
            audio_embeds = inner.multi_modal_projector(hidden.reshape(-1, inner.config.audio_config.intermediate_size))
            embeds = inner.get_input_embeddings()(ids)
            if "merge_no_sync" in self.on:
                is_audio = (ids == vox.AUDIO).reshape(-1)
                # the k-th audio placeholder takes the k-th audio embedding: same kernels for any count
                order = (torch.cumsum(is_audio, 0) - 1).clamp(min=0)
                placed = audio_embeds.to(embeds.dtype)[order]
                embeds = torch.where(is_audio[:, None], placed, embeds.reshape(-1, embeds.shape[-1]))
                embeds = embeds.reshape(ids.shape[0], ids.shape[1], -1)
            else:
                mask = inner.get_placeholder_mask(ids, inputs_embeds=embeds, audio_features=audio_embeds)
                embeds = embeds.masked_scatter(mask, audio_embeds.to(embeds.device, embeds.dtype))
        return embeds

    def transcribe(self, audios: list[np.ndarray], target_tokens: list[int] | None, clock: Clock) -> list[Transcript]:
        return run_to_end(self._steps(audios, target_tokens, clock, pause=False))

    def transcribe_steps(self, audios: list[np.ndarray], target_tokens: list[int] | None, clock: Clock):
        """A batch holding a clip over 30 s pauses after each chunk's log-mel, after each chunk's
        encoder, after each piece of its prefill (chunked_prefill) and after every decode step (its
        transcript is one sequence, however long: a 29-minute clip decodes thousands of steps); a
        batch of short clips is one unit, as it is for Whisper."""
        return self._steps(audios, target_tokens, clock, pause=any(vox.n_chunks(a) > 1 for a in audios))

    @torch.inference_mode()
    def _steps(self, audios: list[np.ndarray], target_tokens: list[int] | None, clock: Clock, pause: bool):
        budget = vox.token_budget(self.engine_cfg.max_new_tokens, audios, target_tokens)
        rows = len(audios)
        if "static_cache" in self.on:
            # one shape per chunk count for the whole run (see plan), so its cache and captured
            # graph are reused; padding rows' output is dropped
            padded, chunks = self.batch_shape([len(a) for a in audios])[:2]
            self.rows_for[chunks] = padded  # without a plan: at least as many rows as before
            audios = list(audios) + [audios[-1]] * (padded - rows)
            if target_tokens is not None:
                target_tokens = list(target_tokens) + [target_tokens[-1]] * (padded - rows)
        ids, mask, features = yield from self._inputs(audios, clock, pause)
        embeds = yield from self._embeddings(ids, features, clock, pause)
        if "static_cache" in self.on:
            # a cache holds the prompt and token budget of that many chunks, no more: a step reads all of it
            self.decoder.use_shape(padded, vox.static_cache_len(chunks, self.engine_cfg.max_new_tokens))
        tokens = yield from self.decoder.generate_steps(embeds, mask, target_tokens, budget, clock, pause=pause)
        with clock.phase("detokenise"):
            tokens = tokens[:rows]
            lengths = generated_lengths(tokens, vox.EOS)
            ids_list = tokens.tolist()
            texts = self.processor.batch_decode(tokens, skip_special_tokens=True)
        return [Transcript(t.strip(), n, ids_list[i][:n]) for i, (t, n) in enumerate(zip(texts, lengths, strict=True))]

    def streams(self, lengths: list[int]) -> bool:
        return True  # every chunk of a clip is in its one row: a row is a clip however long

    def text_of(self, token_ids: list[int]) -> str:
        ended = token_ids.index(vox.EOS) if vox.EOS in token_ids else len(token_ids)
        return self.processor.batch_decode([token_ids[:ended]], skip_special_tokens=True)[0].strip()

    def report(self) -> dict:
        static = self.decoder.options.static_cache
        return self.decode_report() | {"static_cache_len": self.max_cache_len if static else None}


def scaled(log_spectra: list[torch.Tensor]) -> torch.Tensor:
    """A clip's log-mel chunks (log_mel_chunks) floored 8 below the whole clip's peak and scaled
    as Whisper's recipe: (chunks, 128, 3000)."""
    log_spec = torch.stack(log_spectra)
    return (torch.maximum(log_spec, log_spec.max() - 8.0) + 4.0) / 4.0


ENGINE = VoxtralPatched
