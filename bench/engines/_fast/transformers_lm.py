"""A transformers decoder-only language model as the fast-decode core drives it.

Any causal language model of transformers (its decoder layers, final norm and output
projection) gives the core what it needs: a forward pass from input embeddings to the last
position's logits, its token embedding, and its static or dynamic KV cache.
"""

from __future__ import annotations

import inspect

import torch


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
        # its layers take the encoder-decoder cache whole (is_updated, both halves by layer
        # index): no one-layer view is written for it, so it compiles whole, never per layer
        self.layers = None
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
