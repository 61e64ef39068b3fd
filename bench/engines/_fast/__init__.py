"""The fast-decode core: what makes a decoder fast whatever the model, in plain functions.

A model hands the core its forward pass (embeddings in, last-position logits out) and its
caches; the core runs greedy decoding around it (decoder.py): a static KV cache per batch
shape, reused across batches; a step compiled with torch.compile, the whole step or one
decoder layer shared by all (layers.py); the step captured once as a CUDA graph and
replayed; end-of-sequence tracked on the device and read back every few steps; length
matching for random weights (lengths.py). Stacked projection weights (fusion.py) are the
one change inside the model. Each of these is a patch an engine can switch off, so the
ablation measures what each is worth; voxtral_patched is the Voxtral glue around it.
"""
