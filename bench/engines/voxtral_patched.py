"""Voxtral through our own fast path over the same weights, every change a named patch.

It uses the stock modules of VoxtralForConditionalGeneration (audio tower, projector,
language model, lm_head) and replaces only the glue around them, in the spirit of
gpt-fast; fused_projections alone reaches inside, stacking each layer's projection
weights (bench/engines/_fusion.py). Each entry of PATCHES can be switched off
(`engine.patches=[...]` lists the ones on); with a patch off, that step runs as stock
transformers runs it, so the speed-up of each patch can be measured on its own. With
every patch on or off, the tokens equal voxtral_stock's (checked in float32 on the CPU by
the tests).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field

import numpy as np
import torch

from bench.config import EngineConfig
from bench.engines import _voxtral as vox
from bench.engines._compiled_layers import CompiledDecodeLayers
from bench.engines._fusion import fuse_projections
from bench.engines.base import Transcript
from bench.errors import BenchError
from bench.pipeline.clock import Clock

PATCHES = {
    "device_features": "log-mel computed on the device from the waveform; stock encodes each clip to WAV, "
    "decodes it again and runs the STFT on the host (the 16-bit PCM rounding of that round trip is kept)",
    "batched_encoder": "all 30 s chunks of the batch through the audio encoder in one call (off: one call per chunk)",
    "merge_no_sync": "audio embeddings placed by a cumulative-sum gather and a where: no boolean-mask count "
    "check and no host sync (off: stock's get_placeholder_mask + masked_scatter)",
    "static_cache": "a preallocated static KV cache reused across batches (off: DynamicCache, grown every step)",
    "sync_free_loop": "greedy loop with end-of-sequence tracked on the device and read back every "
    "eos_check_every steps (off: read back after every step, as generate does)",
    "fused_projections": "each decoder layer's q, k and v projections in one matrix product over their stacked "
    "weights, and gate and up in another (off: one product each, as stock)",
    "compiled_step": "the decode step through torch.compile, which fuses its many small kernels (norms, rotary, "
    "residuals): under a CUDA graph only its decoder layers, through one compiled function shared by all, so the "
    "cold start compiles one layer; where the host runs every step (CPU, cuda_graph off) the whole step, which also "
    "removes transformers' Python around the layers. Inductor's on-disk cache leaves the compile to a host's first "
    "run (inert without static_cache, whose fixed shapes it needs)",
    "cuda_graph": "on CUDA, the decode step captured once as a CUDA graph and replayed (inert without "
    "static_cache, and on the CPU)",
}


@dataclass
class Config(EngineConfig):
    name: str = "voxtral_patched"
    family: str = "voxtral"
    patches: list[str] = field(default_factory=lambda: list(PATCHES))
    eos_check_every: int = 8
    max_new_tokens: int = 500  # per 30 s chunk of the batch's longest clip
    # the static cache holds at least this many 30 s chunks, or the first batch's longest clip,
    # and grows for a longer one; a cache longer than the audio needs is read at every step
    max_chunks: int = 1
    # what compiled_step compiles: "layers" (one graph shared by the decoder layers: a small
    # cold start), "step" (the whole step), or "auto": layers under a CUDA graph, else step
    compile_scope: str = "auto"


COMPILE_SCOPES = ("auto", "layers", "step")


class VoxtralPatched(vox.VoxtralEngine):
    PATCHES = PATCHES
    STOCK = "voxtral_stock"  # the same weights through transformers as shipped: the tokens to equal
    PHASES = ("h2d", "features", "encode", "merge", "prefill", "decode", "detokenise")
    COMPILES = True  # compiled_step

    def load(self) -> None:
        unknown = sorted(set(self.engine_cfg.patches) - set(PATCHES))
        if unknown:
            raise BenchError(f"unknown patch(es) {unknown}; voxtral_patched has: {', '.join(PATCHES)}")
        if self.engine_cfg.compile_scope not in COMPILE_SCOPES:
            raise BenchError(
                f"engine.compile_scope={self.engine_cfg.compile_scope!r}; choose from: {', '.join(COMPILE_SCOPES)}"
            )
        self.on = set(self.engine_cfg.patches)
        self.processor = vox.load_processor(self.model_cfg)
        arch = self.architecture if self.model_cfg.weights == "random" else None
        self.model = vox.load_model(self.model_cfg, arch, self.device, self.dtype)
        language_model = self.model.model.language_model
        if "fused_projections" in self.on:
            fuse_projections(language_model)
        tokenizer = self.processor.tokenizer
        self.language_ids = tokenizer.encode(f"lang:{self.language}", add_special_tokens=False)
        fe = self.processor.feature_extractor
        self.mel_filters = torch.from_numpy(fe.mel_filters).to(self.device, torch.float32)
        self.window = torch.hann_window(fe.n_fft, device=self.device)
        self.n_fft, self.hop = fe.n_fft, fe.hop_length
        # the static-cache path keeps a cache (and its graph) per batch shape: (rows, chunks)
        self.shapes: dict[tuple[int, int], tuple] = {}
        self.rows_for: dict[int, int] = {}  # chunks -> the rows batches of that many chunks are padded to
        self.shape_key, self.cache, self.rows, self.graph, self._valid = None, None, 0, None, None
        self._use_shape(0, self.engine_cfg.max_chunks)
        # a graph replays fixed buffers: it needs the static cache, and CUDA
        self.use_graph = {"cuda_graph", "static_cache"} <= self.on and self.device.type == "cuda"
        self._cache_kwargs = cache_kwarg_names(language_model)
        # a compiled step or layer is specialised to its shapes: a growing DynamicCache
        # would recompile it at every step
        self.compiled = {"compiled_step", "static_cache"} <= self.on
        if self.compiled:  # each compiles on its first call; _step uses one of them
            self.compiled_layers = CompiledDecodeLayers(language_model, self._cache_kwargs[0])
            self._compiled_step = torch.compile(self._step_forward, dynamic=False)
        self.graphs_at_load = vox.compiled_graphs()
        self.cached_graphs_at_load = vox.inductor_cached_graphs() if self.compiled else None

    def _chunks(self, lengths: list[int]) -> int:
        """30 s chunks a batch's static cache holds: its longest clip's, at least engine.max_chunks."""
        return max(self.engine_cfg.max_chunks, *(vox.chunks_in(n) for n in lengths))

    def plan(self, batches: list[list[int]]) -> None:
        # pad every batch to the largest batch of its chunk count: one cache and graph per count
        for lengths in batches:
            chunks = self._chunks(lengths)
            self.rows_for[chunks] = max(self.rows_for.get(chunks, 0), len(lengths))

    def batch_shape(self, lengths: list[int]):
        if "static_cache" not in self.on:
            return None  # a DynamicCache grows every step: nothing is compiled or captured for it
        chunks = self._chunks(lengths)
        return max(self.rows_for.get(chunks, 0), len(lengths)), chunks

    def _use_shape(self, rows: int, chunks: int) -> None:
        """Switch to the cache, mask buffer and captured graph of batches of this shape (made at
        its first batch, kept for the next): a cache holds the prompt and the token budget of
        `chunks` 30 s chunks, no more, since a decode step reads all of it."""
        key = (rows, chunks)
        if key == self.shape_key:
            return
        if self.shape_key is not None:
            self.shapes[self.shape_key] = (self.cache, self.graph, self._valid)
        self.shape_key, self.rows, self.capacity_chunks = key, rows, chunks
        self.max_cache_len = vox.static_cache_len(chunks, self.engine_cfg.max_new_tokens)
        self.cache, self.graph, self._valid = self.shapes.pop(key, (None, None, None))

    def after_out_of_memory(self) -> None:
        # the halves get a cache (and graph) of their own size
        self.shapes, self.rows_for = {}, {}
        self.shape_key, self.cache, self.rows, self.graph, self._valid = None, None, 0, None, None
        super().after_out_of_memory()

    def count_target_tokens(self, reference: str) -> int:
        return vox.count_tokens(self.processor.tokenizer, reference)

    # -- inputs -----------------------------------------------------------------------
    def _log_mel(self, audio: torch.Tensor) -> torch.Tensor:
        """One clip -> (chunks, 128, 3000), as the processor computes it (Whisper's recipe)."""
        # Stock writes the clip as 16-bit WAV and reads it back. Keep that quantisation as
        # the libsndfile in soundfile's wheels does it (scale 32768, round down, clip), so
        # features and tokens stay identical; a test checks it against the processor.
        audio = (torch.floor(audio.double() * 32768).clamp(-32768, 32767) / 32768).float()
        chunks = vox.n_chunks(audio)
        audio = torch.nn.functional.pad(audio, (0, chunks * vox.CHUNK_SAMPLES - audio.shape[0]))
        stft = torch.stft(audio, self.n_fft, self.hop, window=self.window, return_complex=True)
        power = (stft[..., :-1].abs() ** 2).contiguous()
        log_spec = torch.clamp(self.mel_filters.T @ power, min=1e-10).log10()
        log_spec = torch.maximum(log_spec, log_spec.max() - 8.0)  # floor relative to the whole clip
        log_spec = (log_spec + 4.0) / 4.0
        return log_spec.reshape(log_spec.shape[0], chunks, -1).transpose(0, 1)

    def _inputs(self, audios: list[np.ndarray], clock: Clock):
        """Prompt ids, attention mask and features on the device."""
        if "device_features" not in self.on:
            with clock.phase("features"):
                inputs = self.processor.apply_transcription_request(
                    language=self.language,
                    audio=list(audios),
                    format=["wav"] * len(audios),
                    model_id=self.model_cfg.id,
                    sampling_rate=vox.SAMPLE_RATE,
                )
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
        with clock.phase("features"):
            features = torch.cat([self._log_mel(w) for w in waves]).to(self.dtype)
        return ids, mask, features

    # -- encoder and merge ------------------------------------------------------------
    def _embeddings(self, ids: torch.Tensor, features: torch.Tensor, clock: Clock) -> torch.Tensor:
        inner = self.model.model
        with clock.phase("encode"):
            if "batched_encoder" in self.on:
                hidden = inner.audio_tower(features).last_hidden_state
            else:
                hidden = torch.cat([inner.audio_tower(f[None]).last_hidden_state for f in features])
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

    # -- decoding ---------------------------------------------------------------------
    def _new_cache(self, rows: int):
        from transformers import DynamicCache, StaticCache

        if "static_cache" not in self.on:
            self._cache_in_use = DynamicCache(config=self.model.config.text_config)
        elif self.cache is None:
            self.cache = StaticCache(config=self.model.config.text_config, max_cache_len=self.max_cache_len)
            self.graph = None
            self._cache_in_use = self.cache
        else:
            self.cache.reset()  # zeroes in place: a captured graph still points at it
            self._cache_in_use = self.cache
        return self._cache_in_use

    def _forward(self, embeds, mask4d, positions, cache_position, cache) -> torch.Tensor:
        cache_kw, position_kw = self._cache_kwargs
        extra = {cache_kw: cache} | ({position_kw: cache_position} if position_kw else {})
        out = self.model.model.language_model(
            inputs_embeds=embeds, attention_mask=mask4d, position_ids=positions, use_cache=True, **extra
        )
        return self.model.lm_head(out.last_hidden_state[:, -1]).float()

    @torch.inference_mode()
    def transcribe(self, audios: list[np.ndarray], target_tokens: list[int] | None, clock: Clock) -> list[Transcript]:
        budget = vox.token_budget(self.engine_cfg.max_new_tokens, audios, target_tokens)
        rows = len(audios)
        if "static_cache" in self.on:
            # one shape per chunk count for the whole run (see plan), so its cache and captured
            # graph are reused; padding rows' output is dropped
            padded, chunks = self.batch_shape([len(a) for a in audios])
            self.rows_for[chunks] = padded  # without a plan: at least as many rows as before
            self._use_shape(padded, chunks)
            audios = list(audios) + [audios[-1]] * (padded - rows)
            if target_tokens is not None:
                target_tokens = list(target_tokens) + [target_tokens[-1]] * (padded - rows)
        ids, mask, features = self._inputs(audios, clock)
        embeds = self._embeddings(ids, features, clock)
        tokens = self._greedy(embeds, mask, target_tokens, budget, clock)
        with clock.phase("detokenise"):
            tokens = tokens[:rows]
            lengths = vox.generated_lengths(tokens)
            ids_list = tokens.tolist()
            texts = self.processor.batch_decode(tokens, skip_special_tokens=True)
        return [Transcript(t.strip(), n, ids_list[i][:n]) for i, (t, n) in enumerate(zip(texts, lengths, strict=True))]

    def _greedy(self, embeds, mask, target_tokens, budget: int, clock: Clock) -> torch.Tensor:
        rows, length = mask.shape
        device = self.device
        static = "static_cache" in self.on
        kv_len = self.max_cache_len if static else length + budget
        # valid[b, j]: row b may attend key j (a real prompt token or a generated one)
        valid = self._valid_buffer(rows, kv_len)
        valid[:, :length] = mask.bool()
        targets = torch.tensor(target_tokens, device=device) if target_tokens is not None else None
        cache = self._new_cache(rows)
        out = torch.full((rows, budget), vox.PAD, dtype=torch.long, device=device)
        unfinished = torch.ones(rows, dtype=torch.bool, device=device)
        # positions as generate derives them from a left-padded mask
        positions = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 0)
        position = positions[:, -1:] + 1
        # the write slot, for a transformers that still takes it (before 5.24); newer ones
        # track it in the cache, and building it each step would be a kernel for nothing
        takes_slot = self._cache_kwargs[1] is not None

        with clock.phase("prefill"):
            # the 2D mask lets transformers build the prefill mask exactly as generate does
            # (including its handling of fully padded query rows)
            slots = torch.arange(length, device=device) if takes_slot else None
            logits = self._forward(embeds, mask, positions, slots, cache)
            token = self._pick(logits, 0, targets, unfinished)
            out[:, 0] = token

        with clock.phase("decode"):
            check_every = self.engine_cfg.eos_check_every if "sync_free_loop" in self.on else 1
            step_fn = None
            for step in range(1, budget):
                if step % check_every == 0 and not bool(unfinished.any()):
                    break  # the loop's only read-back to the host
                cache_position = torch.full((1,), length + step - 1, device=device) if takes_slot else None
                valid[:, length + step - 1] = True
                if self.use_graph:
                    step_fn = step_fn or self._graph_step(rows, token, position, cache_position)
                    logits = step_fn(token, position, cache_position)
                else:
                    logits = self._step(
                        token, position, cache_position, valid[:, : kv_len if static else length + step]
                    )
                token = self._pick(logits, step, targets, unfinished)
                out[:, step] = token
                position = position + 1
                clock.count("decode_steps", 1)
        return out

    def _step(self, token, position, cache_position, valid) -> torch.Tensor:
        args = (token, position, cache_position, valid)
        if not self.compiled:
            return self._step_forward(*args)
        if self.compiled_scope == "layers":
            with self.compiled_layers.decoding():
                return self._step_forward(*args)
        return self._compiled_step(*args)

    @property
    def compiled_scope(self) -> str | None:
        if not self.compiled:
            return None
        if self.engine_cfg.compile_scope != "auto":
            return self.engine_cfg.compile_scope
        # A replayed graph runs none of the step's Python, so only the kernels count, and
        # the decoder layers hold nearly all of them: compiling one layer for all (a
        # fraction of the whole step's compile) keeps the fusion at a small cold start.
        # Where the host runs every step, compiling it whole also removes transformers'
        # Python around the layers (mask, rotary tables), run at every step otherwise.
        return "layers" if self.use_graph else "step"

    def _step_forward(self, token, position, cache_position, valid) -> torch.Tensor:
        embed = self.model.model.get_input_embeddings()(token[:, None])
        return self._forward(embed, valid[:, None, None, :], position, cache_position, self._cache_in_use)

    def _valid_buffer(self, rows: int, kv_len: int) -> torch.Tensor:
        """Reused with the static cache (a captured graph reads it); fresh otherwise."""
        buffer = getattr(self, "_valid", None)
        if buffer is None or buffer.shape != (rows, kv_len):
            buffer = torch.zeros(rows, kv_len, dtype=torch.bool, device=self.device)
            if "static_cache" in self.on:
                self._valid, self.graph = buffer, None
        buffer.zero_()
        return buffer

    def _pick(self, logits, step: int, targets, unfinished) -> torch.Tensor:
        """Greedy choice as generate makes it, with length matching; finished rows emit padding."""
        if targets is not None:
            logits = vox.force_length(logits, step, targets)
        token = logits.argmax(dim=-1)
        token = torch.where(unfinished, token, vox.PAD)
        unfinished &= token != vox.EOS
        return token

    def _graph_step(self, rows: int, token, position, cache_position):
        """Capture the decode step on CUDA once; each replay reads and writes fixed buffers."""
        if self.graph is not None:
            return self.graph
        static_token, static_position = token.clone(), position.clone()
        static_cache_position = cache_position.clone() if cache_position is not None else None
        valid = self._valid

        def step():
            return self._step(static_token, static_position, static_cache_position, valid)

        # Warm up on a side stream with the real first step's inputs. The static cache
        # advances its own position counter (a device tensor) on every write, so step it
        # back afterwards: the replay of this very step then writes the same slot again.
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            step()
        torch.cuda.current_stream().wait_stream(side)
        for layer in self.cache.layers:
            layer.cumulative_length.sub_(1)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_logits = step()

        def replay(token, position, cache_position):
            static_token.copy_(token)
            static_position.copy_(position)
            if static_cache_position is not None:
                static_cache_position.copy_(cache_position)
            graph.replay()
            return static_logits

        self.graph = replay
        self.captures += 1
        return replay

    def report(self) -> dict:
        return {
            "patches": sorted(self.on),
            "cuda_graph_active": self.use_graph,
            "compiled_step_active": self.compiled,
            "compiled_scope": self.compiled_scope,  # layers: one graph shared by all; step: the whole step
            # one per decode-step shape, shared by every decoder layer (none if an earlier
            # engine in this process compiled the same); more means a recompile: a graph
            # break, a cache regrown, a layer that did not fit the others' graph
            "graphs_compiled": vox.compiled_graphs() - self.graphs_at_load,
            # 0: the cold start paid a full compile; more: Inductor reused cached graphs
            "inductor_cached_graphs_at_load": self.cached_graphs_at_load,
            "eos_check_every": self.engine_cfg.eos_check_every if "sync_free_loop" in self.on else 1,
            "static_cache_len": self.max_cache_len if "static_cache" in self.on else None,
        }


def cache_kwarg_names(language_model: torch.nn.Module) -> tuple[str, str | None]:
    """The keywords this transformers' language model takes for the KV cache and its write slot.

    transformers 5.24 renamed `past_key_values` to `cache` (the old name warns and goes in
    5.40) and dropped `cache_position` (the static cache keeps its own write position);
    older releases, such as the GPU image's, take the old names and need the position.
    """
    params = inspect.signature(language_model.forward).parameters
    cache_kw = "cache" if "cache" in params else "past_key_values"
    return cache_kw, "cache_position" if "cache_position" in params else None


ENGINE = VoxtralPatched
