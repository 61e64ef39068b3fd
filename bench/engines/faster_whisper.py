"""Whisper through faster-whisper on CTranslate2: greedy, English, no timestamps, batched.

faster-whisper is the Whisper runtime many production teams pick over openai-whisper: the
same checkpoints converted to CTranslate2, which runs them in its own C++ kernels (float32
on the CPU, float16 or bfloat16 on a GPU, or with int8 weights: engine.compute_type). bench
runs it with openai-whisper's decoding rules, as every Whisper engine here: the prompt, the
tokens suppressed always and first (`_whisper`), greedy. A batch's clips go through the
steps faster-whisper's BatchedInferencePipeline takes for its batches (log-mel per clip
padded to 30 s, one encoder call for every row, one greedy generate over them) without its
voice-activity detection, which would cut the audio the other engines hear whole. Audio over 30 s goes as the other
Whisper engines take it: 30 s windows one after another, each prompted with the text
before it.

Weights: `model.id` is a CTranslate2 folder, `package:<module>` for one an installed package
ships (model=whisper_tiny_en_ct2), or a faster-whisper model name (a Hub download). CTranslate2
cannot build random weights, so this engine runs pretrained weights only, and decodes free
(no length matching, which only random weights need).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from bench.config import EngineConfig
from bench.engines import _ct2_whisper as ct2
from bench.engines import _whisper as wh
from bench.engines.base import Transcript, split_into_windows
from bench.errors import BenchError
from bench.pipeline.clock import Clock

COMPUTE_TYPES = {torch.float32: "float32", torch.float16: "float16", torch.bfloat16: "bfloat16"}
CUDA_LIBRARIES = (
    "faster_whisper on a GPU needs CTranslate2's CUDA 12 libraries (cuBLAS 12, cuDNN 9): "
    "pip install nvidia-cublas-cu12 'nvidia-cudnn-cu12==9.*' and put their lib folders on LD_LIBRARY_PATH"
)


@dataclass
class Config(EngineConfig):
    name: str = "faster_whisper"
    family: str = "whisper"
    max_new_tokens: int = 224  # per 30 s window (half Whisper's 448-token context, as openai-whisper)
    # CTranslate2's compute type: float32, float16, bfloat16, int8 (int8 weights), int8_float32,
    # int8_float16, int8_bfloat16, int16. Unset: the run's dtype. It is what the run records as
    # its dtype, since an int8 run's WER and speed are not float32's.
    compute_type: str | None = None


class FasterWhisper(wh.WhisperEngine):
    PHASES = ("features", "encode", "decode", "detokenise")
    RANDOM_WEIGHTS = False  # CTranslate2 loads converted checkpoints only

    @property
    def precision(self) -> str:
        """Once loaded, the compute type CTranslate2 settled on (int8 on a CPU is int8_float32),
        so two names for one computation are one setting in the run's key; before, the one asked."""
        if getattr(self, "model", None) is not None:
            return self.model.model.compute_type
        if self.engine_cfg.compute_type is not None:
            return self.engine_cfg.compute_type
        if self.dtype not in COMPUTE_TYPES:
            raise BenchError(f"faster_whisper computes in float32, float16 or bfloat16, not {self.dtype}")
        return COMPUTE_TYPES[self.dtype]

    def load(self) -> None:
        if self.model_cfg.weights != "pretrained":
            raise BenchError(
                "faster_whisper runs CTranslate2 checkpoints only and cannot build random weights: "
                "use model=whisper_tiny_en_ct2 (real weights, no download) or model.id=<CTranslate2 folder>"
            )
        try:
            import ctranslate2
            from faster_whisper import WhisperModel
        except ImportError as err:
            raise BenchError(f'faster_whisper needs the real-weights extra: pip install -e ".[real]" ({err})') from err
        if self.device.type == "cuda" and ctranslate2.get_cuda_device_count() == 0:
            raise BenchError(f"CTranslate2 sees no CUDA device. {CUDA_LIBRARIES}")
        supported = ctranslate2.get_supported_compute_types(self.device.type)
        if self.precision not in supported:
            raise BenchError(
                f"engine.compute_type={self.precision}: CTranslate2 on this {self.device.type} computes in "
                f"{', '.join(sorted(supported))}"
            )
        try:
            self.model = WhisperModel(
                ct2.resolve(self.model_cfg.id),
                device=self.device.type,
                device_index=self.device.index or 0,
                compute_type=self.precision,
                # as many threads as torch gives the other engines on this host
                cpu_threads=torch.get_num_threads(),
                local_files_only=not self.model_cfg.hub,
            )
            if self.device.type == "cuda":  # cuBLAS and cuDNN load at the first call: fail here, in one line
                mel = np.zeros((1, self.model.model.n_mels, 3000), dtype=np.float32)
                self.model.model.encode(ctranslate2.StorageView.from_array(mel))
        except (RuntimeError, ValueError, OSError) as err:
            first = str(err).splitlines()[0] if str(err) else type(err).__name__
            if "libcu" in first or "cudnn" in first.lower():
                raise BenchError(f"{CUDA_LIBRARIES} ({first})") from err
            raise BenchError(f"faster_whisper cannot load {self.model_cfg.id!r}: {first}") from err
        multilingual = self.model.model.is_multilingual
        n_vocab = 51765 + 1 + self.model.model.num_languages if multilingual else 51864
        self.tokenizer = wh.tokenizer(n_vocab, self.language)
        self.n_text_ctx = self.model.max_length
        self.suppressed = wh.suppressed_tokens(self.tokenizer)

    def count_target_tokens(self, reference: str) -> int:
        return wh.count_tokens(self.tokenizer, reference)

    def transcribe(self, audios: list[np.ndarray], target_tokens: list[int] | None, clock: Clock) -> list[Transcript]:
        if any(len(audio) > wh.WINDOW_SAMPLES for audio in audios):
            return self.transcribe_long_form(audios, None, clock)
        return self._decode(self._encode(audios, clock), [None] * len(audios), clock)

    def long_form_steps(self, audio: np.ndarray, target: int | None, clock: Clock):
        windows = split_into_windows(audio)

        # each window through the encoder on its own: CTranslate2's output cannot be cut by row
        # on the device (the other engines encode a clip's windows in one call)
        def decode(j: int, _targets, prompt: list[int]) -> Transcript:
            return self._decode(self._encode([windows[j]], clock), [prompt], clock)[0]

        return (yield from self._windows_in_turn(windows, None, decode))

    def _encode(self, windows: list[np.ndarray], clock: Clock):
        import ctranslate2
        from faster_whisper.audio import pad_or_trim

        extractor = self.model.feature_extractor
        with clock.phase("features"):
            # as BatchedInferencePipeline makes them: each window's log-mel, padded to 30 s
            mel = np.stack([pad_or_trim(extractor(window)[..., :-1]) for window in windows])
        with clock.phase("encode"):
            return self.model.model.encode(ctranslate2.StorageView.from_array(mel), to_cpu=False)

    def _decode(self, encoded, prompts: list[list[int] | None], clock: Clock) -> list[Transcript]:
        """Greedy over every row, openai-whisper's rules; each row after its own previous text."""
        initial = [wh.initial_tokens(self.tokenizer, prompt, self.n_text_ctx) for prompt in prompts]
        longest = max(len(tokens) for tokens in initial)
        budget = min(self.engine_cfg.max_new_tokens, self.n_text_ctx - longest)
        with clock.phase("decode"):
            results = self.model.model.generate(
                encoded,
                initial,
                beam_size=1,
                max_length=longest + budget,  # CTranslate2 counts the prompt in
                suppress_blank=True,  # a blank and end-of-text never first, as openai-whisper
                suppress_tokens=self.suppressed,
            )
        generated = [result.sequences_ids[0] for result in results]
        # greedy runs one step per token after the prompt's, plus the one that wrote end-of-text
        clock.count("decode_steps", min(budget, max(len(ids) + 1 for ids in generated)) - 1)
        with clock.phase("detokenise"):
            return [Transcript(self.tokenizer.decode(ids).strip(), len(ids), list(ids)) for ids in generated]


ENGINE = FasterWhisper
