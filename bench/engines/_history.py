"""What changed in the engines and in how bench times them, by the bench version it came in.

A results folder is measured once and read for months: its README says which bench measured
it and lists every change below that came later, so no one takes an old figure for today's
code's speed. The rule for contributors: a change to what an engine runs, or to how a pass is
timed, bumps bench.__version__ and adds its line here (tables are always rewritten by the
current bench from the raw run folders, so a change to how they are computed needs no line).
"""

from __future__ import annotations

from dataclasses import dataclass

from packaging.version import Version

# The version of bench's source at a commit that runs name where their own record is missing
# (runs made before bench recorded its version) or wrong (runs from before 92a1593, when an
# editable install's stale metadata, 0.1.0, was recorded for a tree at 0.2.0). A test reads
# each entry back from that commit's bench/__init__.py, and checks every committed run's.
VERSION_OF_COMMIT = {"e8cd5de": "0.1.0", "4009608": "0.2.0", "5210db8": "0.2.0", "71680be": "0.2.0"}


@dataclass(frozen=True)
class Change:
    version: str  # the first bench version with it
    what: str  # an engine (and its patch), or "timing" for how every engine's passes are timed
    change: str
    commit: str  # where it landed


CHANGES = (
    Change("0.2.0", "timing", "every batch shape the run will time is run once untimed first, so nothing is compiled "
           "or captured inside a timed pass", "9127c54"),
    Change("0.2.0", "voxtral_patched: sync_free_loop", "end-of-sequence read back one step late, never blocking, "
           "instead of every 8 steps (eos_check_every: 8 in older summaries): a finished batch runs one step more at "
           "most, not up to 7", "da4b1da"),
    Change("0.2.0", "voxtral_patched: compiled_prefill (new)", "the audio encoder's layers and the prefill through "
           "torch.compile, one graph per batch shape, compiled in the warm-up", "da4b1da"),
    Change("0.2.0", "voxtral_patched: compiled_prefill", "one compiled function for every layer of a stack, as "
           "compiled_step's under a CUDA graph", "bc49edb"),
    Change("0.2.0", "openai_whisper", "random weights: the decoder's positional embedding drawn from the seed "
           "(it held uninitialised memory); the same shapes, so the same speed", "a4d9e4e"),
    Change("0.2.0", "new engines", "whisper_hf, whisper_compile, whisper_patched and faster_whisper (Whisper on the "
           "same three paths as Voxtral, and CTranslate2)", "413ac38"),
    Change("0.2.0", "timing", "shapes are also warmed untimed with run.warmup_batches=0, after an out-of-memory "
           "back-off and when on_error=skip drops a clip; compiles and captures are counted inside the clock only, "
           "and so is Dynamo's recompile limit being reached", "ad52631"),
    Change("0.2.0", "voxtral_patched: compiled_prefill", "with engine.max_chunks above 1, each prompt length is a "
           "batch shape of its own (it shared one with the longer prompt, and compiled while timed)", "ad52631"),
    Change("0.2.0", "voxtral_compile", "the CUDA graphs of reduce-overhead mode are counted, and a shape after an "
           "out-of-memory back-off is warmed untimed", "ad52631"),
    Change("0.3.0", "whisper_hf", "an English-only model's prompt is <|startoftranscript|><|notimestamps|>, as "
           "openai-whisper's (generate had detected a language and put token 0 into it, which changed what tiny.en "
           "wrote on noise and its WER)", "2554647"),
    Change("0.3.0", "whisper_compile", "the same prompt fix as whisper_hf's, whose generate it compiles", "2554647"),
    Change("0.4.0", "voxtral_patched: grouped_attention (new)", "a decode step's attention reads each key-value head "
           "once; before, the compiled step copied every layer's keys and values once per query head each step",
           "80f6603"),
    Change("0.4.0", "voxtral_patched: attention_window (new)", "a decode step attends the cache slots in use, in "
           "windows doubling from 128 slots; before, every step read the static cache's whole capacity", "1c893c6"),
    Change("0.4.0", "whisper_patched: attention_window (new)", "a decode step's self-attention attends the cache "
           "slots in use, in windows doubling from 128 slots; before, every step read the whole capacity", "1c893c6"),
    Change("0.5.0", "whisper_patched: compiled_step", "under a CUDA graph one compiled function for every decoder "
           "layer, the prefill's per layer too (engine.compile_scope auto, as voxtral_patched's); before, the whole "
           "step and prefill compiled for each shape and attention window", "8a574a4"),
    Change("0.5.0", "whisper_patched: batched_encoder", "a long clip's 30 s windows are encoded one per window, "
           "when its turn comes; before, all of a clip's windows in one encoder call first", "cc0946b"),
    Change("0.5.0", "openai_whisper", "a long clip's 30 s windows are encoded one per window, as openai-whisper's "
           "transcribe does; before, all of a clip's windows in one encoder call first", "cc0946b"),
)  # fmt: skip


def measured_version(environment: dict) -> str | None:
    """The bench version a run was measured by: its commit's source where VERSION_OF_COMMIT
    knows it, else the run's own record."""
    commit = environment.get("git_commit") or ""
    known = next((version for prefix, version in VERSION_OF_COMMIT.items() if commit.startswith(prefix)), None)
    return known or (str(environment["bench"]) if environment.get("bench") else None)


def changes_since(version: str) -> list[Change]:
    return [c for c in CHANGES if Version(c.version) > Version(version)]


def changes_to(engine: str, earlier: str | None, later: str | None) -> list[Change]:
    """The changes to the engine, or to how passes are timed, after version `earlier` and up to
    `later` (none where either is unknown): a run measured by `earlier` predates them."""
    if not earlier or not later:
        return []
    return [
        c for c in changes_since(earlier)
        if Version(c.version) <= Version(later) and (c.what == "timing" or c.what.split(":")[0] == engine)
    ]  # fmt: skip
