"""A transformers decoder-only language model as the fast-decode core drives it.

Any causal language model of transformers (its decoder layers, final norm and output
projection) gives the core what it needs: a forward pass from input embeddings to the last
position's logits, its token embedding, and its static or dynamic KV cache.
"""

from __future__ import annotations

import inspect
from contextlib import contextmanager

import torch

from bench.engines._fast.layers import OneLayerCache, one_layer_view


def cache_kwarg_names(language_model: torch.nn.Module) -> tuple[str, str | None]:
    """The keywords this transformers' language model takes for the KV cache and its write slot.

    transformers 5.24 renamed `past_key_values` to `cache` (the old name warns and goes in
    5.40) and dropped `cache_position` (the static cache keeps its own write position);
    older releases, such as the GPU image's, take the old names and need the position.
    """
    params = inspect.signature(language_model.forward).parameters
    cache_kw = "cache" if "cache" in params else "past_key_values"
    return cache_kw, "cache_position" if "cache_position" in params else None


class TransformersLM:
    def __init__(self, language_model: torch.nn.Module, lm_head: torch.nn.Module, embedding, text_config):
        self.language_model, self.lm_head, self.embedding, self.text_config = (
            language_model,
            lm_head,
            embedding,
            text_config,
        )
        self.cache_keyword, self._position_keyword = cache_kwarg_names(language_model)
        self.takes_cache_position = self._position_keyword is not None
        self.layers = language_model.layers

    def forward(self, embeds, attention_mask, positions, cache_position, cache) -> torch.Tensor:
        extra = {self.cache_keyword: cache}
        if self._position_keyword:
            extra[self._position_keyword] = cache_position
        out = self.language_model(
            inputs_embeds=embeds, attention_mask=attention_mask, position_ids=positions, use_cache=True, **extra
        )
        return self.lm_head(out.last_hidden_state[:, -1]).float()

    def embed(self, token_ids: torch.Tensor) -> torch.Tensor:
        return self.embedding(token_ids)

    def self_attention_layers(self, cache) -> list:
        return cache.layers

    def layer_view(self, layer, cache, index: int):
        return one_layer_view(layer, cache, index)

    def _heads(self) -> tuple[int, int]:
        config = self.text_config
        heads = getattr(config, "num_key_value_heads", None) or config.decoder_attention_heads
        hidden = getattr(config, "hidden_size", None) or config.d_model
        return heads, getattr(config, "head_dim", None) or hidden // getattr(config, "num_attention_heads", heads)

    def initialize(self, cache, rows: int, dtype: torch.dtype) -> None:
        if hasattr(cache, "early_initialization"):  # transformers before 5.20 initialises at the first write
            cache.early_initialization(rows, *self._heads(), dtype, self.embedding.weight.device)

    def new_cache(self, max_len: int | None):
        from transformers import DynamicCache, StaticCache

        if max_len is None:
            return DynamicCache(config=self.text_config)
        return StaticCache(config=self.text_config, max_cache_len=max_len)


class TransformersEncoderDecoder(TransformersLM):
    """A transformers encoder-decoder's decoder (Whisper's): the same, with the encoder's
    output attended by every layer's cross-attention. Its keys and values are computed once
    per batch, at prefill, and kept in the cache beside the self-attention's."""

    def __init__(self, decoder: torch.nn.Module, proj_out: torch.nn.Module, config, encoder_positions: int):
        super().__init__(decoder, proj_out, decoder.embed_tokens, config)
        self.encoder_positions = encoder_positions
        self.encoder_states: torch.Tensor | None = None  # this batch's, set before it decodes

    def forward(self, embeds, attention_mask, positions, cache_position, cache) -> torch.Tensor:
        extra = {self.cache_keyword: cache}
        if self._position_keyword:
            extra[self._position_keyword] = cache_position
        out = self.language_model(
            inputs_embeds=embeds,
            attention_mask=attention_mask,
            position_ids=positions,
            encoder_hidden_states=self.encoder_states,
            use_cache=True,
            **extra,
        )
        return self.lm_head(out.last_hidden_state[:, -1]).float()

    def self_attention_layers(self, cache) -> list:
        return cache.self_attention_cache.layers

    @contextmanager
    def layer_view(self, layer, cache, index: int):
        """The encoder-decoder cache as layer `index` sees it. Whether its cross-attention's keys
        and values are already written is read here, outside the compiled layer, and marked
        as written: the call this view is for writes them, at the prefill. Whisper's
        cross-attention also indexes the cache's layers with its own layer_idx, which Dynamo
        would take as a constant of the graph (a graph per layer): through the view any index
        reads this layer's part, so the layer's indices read 0 for the call."""
        written = bool(cache.is_updated.get(index, False))
        cache.is_updated[index] = True
        indices = {m: m.layer_idx for m in layer.modules() if isinstance(getattr(m, "layer_idx", None), int)}
        try:
            for attention in indices:
                attention.layer_idx = 0
            yield one_layer_encoder_decoder_cache(cache, index, written)
        finally:
            for attention, layer_idx in indices.items():
                attention.layer_idx = layer_idx

    def initialize(self, cache, rows: int, dtype: torch.dtype) -> None:
        for part in (cache.self_attention_cache, cache.cross_attention_cache):
            super().initialize(part, rows, dtype)

    def new_cache(self, max_len: int | None):
        import copy

        from transformers import DynamicCache, EncoderDecoderCache, StaticCache

        config = copy.deepcopy(self.text_config)
        config.num_hidden_layers = config.decoder_layers  # the cache's layers are the decoder's
        if max_len is None:
            return EncoderDecoderCache(DynamicCache(config=config), DynamicCache(config=config))
        return EncoderDecoderCache(
            StaticCache(config=config, max_cache_len=max_len),
            StaticCache(config=config, max_cache_len=self.encoder_positions),
        )


class _Held:
    """One cache layer under any index: what `cache.layers[i]` reads in the layer's code."""

    def __init__(self, layer):
        self.layer = layer

    def __getitem__(self, index):
        return self.layer


class _CrossHalf:
    """The cross-attention half of one layer's view: its keys and values by any index, and
    their one write (at the prefill)."""

    def __init__(self, layer):
        self.layers = _Held(layer)

    def update(self, key_states, value_states, layer_idx, *args, **kwargs):
        return self.layers.layer.update(key_states, value_states, *args, **kwargs)


class _Written:
    """is_updated as one layer sees it: the flag read before the call; what the layer sets is
    already set on the whole cache (layer_view)."""

    def __init__(self, written: bool):
        self.written = written

    def get(self, index, default=None):
        return self.written

    def __setitem__(self, index, value):
        pass


def one_layer_encoder_decoder_cache(cache, index: int, written: bool):
    """An encoder-decoder cache as one decoder layer sees it, whichever layer index the
    attention passes along (Whisper's reads both halves and is_updated by its own index): the
    index never reaches compiled code, so one compiled function serves every layer. An
    EncoderDecoderCache, as the attention checks, made without its constructor: nothing is
    allocated, each half is that layer's part of the whole cache."""
    from transformers import EncoderDecoderCache

    view = EncoderDecoderCache.__new__(EncoderDecoderCache)
    view.self_attention_cache = OneLayerCache(cache.self_attention_cache.layers[index])
    view.cross_attention_cache = _CrossHalf(cache.cross_attention_cache.layers[index])
    view.is_updated = _Written(written)
    return view
