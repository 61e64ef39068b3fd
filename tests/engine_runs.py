"""Running engines over clips and comparing what they decoded: shared by the engine tests."""

import torch

from bench.pipeline.clock import Clock
from bench.pipeline.measure import make_batches

CPU = torch.device("cpu")


def ablation_cases(patches) -> list[tuple[str | None, int]]:
    """(patch off, batch size) for a patched engine's token tests: every patch on at batch 1 and
    4, each off alone at batch 4, whose padded rows (clips of other lengths, other chunk counts)
    reach what batch 1 reaches and the masks it does not. Each off alone at batch 1 as well
    added a case per patch (30 to 100 s each on a 2-core CPU) that reached no path of its own."""
    return [(None, 1), (None, 4), *((patch, 4) for patch in patches)]


def run_clips(engine, sample, batch_size, targets):
    """Each clip's tokens, and the logits the engine chose them from, step by step (None for a
    clip decoded apart from its batch).

    The logits are kept because this tiny random model leans on its residual stream: a KV
    cache written one slot off changes them by ~1e-3 yet flips none of its tokens. Every
    64th vocabulary entry is kept, enough to see such an error.
    """
    steps = []

    def keep(logits):
        steps.append(logits.reshape(logits.shape[0], -1)[:, ::64].float().clone())

    decoder = getattr(engine, "decoder", None)
    if decoder is not None and hasattr(decoder, "pick"):  # the fast-decode core picks every token from these
        pick = decoder.pick
        decoder.pick = lambda logits, *rest: keep(logits) or pick(logits, *rest)
        undo = lambda: delattr(decoder, "pick")  # noqa: E731
    else:  # the output projection's logits, before any rule suppresses a token
        head = output_head(engine.model)
        undo = head.register_forward_hook(
            lambda _module, _args, out: keep(out[:, -1] if out.dim() == 3 else out)
        ).remove
    tokens, logits = {}, {}
    try:
        for batch in make_batches(sample, batch_size):
            steps.clear()
            with Clock(CPU) as clock:
                out = engine.transcribe([u.audio for u in batch], [targets[u.id] for u in batch], clock)
            # a step per row of the batch; Whisper decodes long clips one after another instead,
            # whose steps hold one row each and are not attributed (None)
            per_row = all(step.shape[0] >= len(batch) for step in steps)
            for row, (u, transcript) in enumerate(zip(batch, out, strict=True)):
                tokens[u.id] = transcript.tokens
                logits[u.id] = torch.stack([step[row] for step in steps]) if per_row else None
    finally:
        undo()
    return tokens, logits


def output_head(model):
    """The module whose output is the logits: Voxtral's lm_head, transformers' Whisper proj_out,
    openai-whisper's decoder (its forward ends in the logits)."""
    for name in ("lm_head", "proj_out"):
        if hasattr(model, name):
            return getattr(model, name)
    return model.decoder


def chunk_counts(utterances) -> int:
    """Distinct 30 s chunk counts among the clips: the batch shapes voxtral_patched keeps."""
    return len({-(-len(u.audio) // (30 * 16_000)) for u in utterances})


def assert_same_logits(got, stock):
    """Equal up to float32 noise (~4e-7 here) at every step stock took; patched may take
    one more before it reads back that every row has finished."""
    for clip, expected in stock.items():
        assert len(got[clip]) >= len(expected), clip
        steps = got[clip][: len(expected)]
        torch.testing.assert_close(steps, expected, rtol=0, atol=1e-5, msg=lambda m, c=clip: f"{c}: {m}")
