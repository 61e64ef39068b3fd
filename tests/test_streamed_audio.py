"""bench.serve holds a long clip as its bytes, decoded a window at a time, for the engines that
read it a window at a time: a request's memory is its upload and one window, not its length
(bench.data.streamed_audio). The windows are the very samples decode_audio gives."""

import io

import numpy as np
import pytest
import soundfile as sf
from fastapi.testclient import TestClient
from test_serve_hostile import TINY, noise

from bench.data.audio import BLOCK_FRAMES, HeaderMismatch, decode_audio
from bench.data.streamed_audio import StreamedAudio, checked
from bench.engines.base import split_into_windows, window_lengths
from bench.lab.grid import compose
from bench.online import server
from bench.pipeline.clock import Clock

WINDOW = 30 * 16_000


def encoded(audio: np.ndarray, rate: int, kind: str) -> bytes:
    out = io.BytesIO()
    sf.write(out, audio, rate, format=kind)
    return out.getvalue()


@pytest.mark.parametrize(("rate", "channels", "kind"), [(16_000, 1, "WAV"), (44_100, 2, "FLAC")])
def test_a_long_clip_is_held_as_its_bytes_and_its_windows_are_decode_audios(rate, channels, kind):
    rng = np.random.default_rng(0)
    data = encoded((rng.normal(0, 0.1, (int(rate * 95), channels))).astype(np.float32).squeeze(), rate, kind)
    whole = decode_audio(data)
    audio, problem = checked(data, 1800, keep_up_to=WINDOW)
    assert problem is None and isinstance(audio, StreamedAudio) and len(audio) == len(whole)
    assert not [v for v in vars(audio).values() if isinstance(v, np.ndarray) and v.size > WINDOW]
    windows = split_into_windows(audio)
    assert windows.lengths == [WINDOW, WINDOW, WINDOW, len(whole) - 3 * WINDOW]
    decode = audio.samples_between
    audio.samples_between = lambda *_: pytest.fail("a window was decoded to count its samples")
    assert window_lengths(windows) == windows.lengths  # read from the windows, none decoded
    audio.samples_between = decode
    for j in [0, 1, 2, 3, 1]:  # in order, then back (a batch retried clip by clip starts again)
        assert np.array_equal(windows[j], whole[j * WINDOW : (j + 1) * WINDOW])
        assert audio._held.size <= BLOCK_FRAMES * 3  # what is decoded ahead of the next window: about a block
    short, _ = checked(encoded(noise(3), 16_000, "WAV"), 1800, keep_up_to=WINDOW)
    assert isinstance(short, np.ndarray) and np.array_equal(short, decode_audio(encoded(noise(3), 16_000, "WAV")))


def test_the_upload_is_checked_whole_before_it_is_held():
    """NaN samples and a cut-off file are found by the check, not when a window is reached."""
    bad = noise(40)
    bad[35 * 16_000] = np.nan
    out = io.BytesIO()
    sf.write(out, bad, 16_000, format="WAV", subtype="FLOAT")
    _, problem = checked(out.getvalue(), 1800, keep_up_to=WINDOW)
    assert problem == f"1 of {len(bad)} samples are NaN or infinite"
    mp3 = encoded(noise(60), 16_000, "MP3")
    with pytest.raises(HeaderMismatch):
        checked(mp3[: len(mp3) // 3], 1800, keep_up_to=WINDOW)


def test_a_served_long_clip_is_transcribed_from_its_windows_as_the_whole_clip_is(monkeypatch):
    """The server hands a Whisper engine a 70 s clip as its bytes (its memory: the upload and one
    window), and answers what the engine makes of the whole decoded clip; before, it held the
    clip's 1.1 million decoded samples until answered."""
    cfg = compose(["engine=openai_whisper", *TINY, "run.batch_size=2", "serve.max_audio_seconds=120"])
    engine = server.load_engine(cfg)
    data = encoded(noise(70, seed=4), 16_000, "FLAC")
    held = []
    app = server.create_app(engine, cfg, {"hardware": "test"})
    real_steps = engine.transcribe_steps
    monkeypatch.setattr(engine, "transcribe_steps", lambda audios, *a: held.extend(audios) or real_steps(audios, *a))
    with TestClient(app) as client:
        answer = client.post("/v1/audio/transcriptions", files={"file": ("a.flac", data, "audio/flac")})
    assert answer.status_code == 200
    assert len(held) == 1 and isinstance(held[0], StreamedAudio)
    whole = decode_audio(data)
    from bench.online.batcher import token_targets

    (expected,) = engine.transcribe([whole], token_targets(engine, [len(whole)], 3.5), Clock(engine.device))
    assert answer.json()["text"] == expected.text and expected.text
