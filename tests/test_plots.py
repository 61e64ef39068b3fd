"""The report's figures read back from the figure objects, and the HTML page's contents."""

import base64
import re

import pytest
from run_folders import make_run

from bench.analysis.plots import draw_rtfx_vs_batch, draw_wer_vs_rtfx, save
from bench.analysis.report import main
from bench.analysis.runs import load_runs


@pytest.fixture
def sweep(tmp_path):
    """Two engines at batch 1, 8 and 32, RTFx 10 to 320, each of three passes 5% apart."""
    for engine, seconds in (("voxtral_patched", 1.0), ("openai_whisper", 2.0)):
        for batch in (1, 8, 32):
            make_run(tmp_path / "runs" / f"{engine}_b{batch}", engine=engine, batch_size=batch,
                     seconds_per_batch=seconds / batch, noise=0.0, weights="random",
                     repeats=3, pass_factors=[1.0, 1.05, 1 / 1.05])  # fmt: skip
    return load_runs([str(tmp_path / "runs")])


def _errorbars(ax):
    from matplotlib.container import ErrorbarContainer

    return [c for c in ax.containers if isinstance(c, ErrorbarContainer)]


def test_rtfx_vs_batch_stands_alone(sweep, tmp_path):
    fig = draw_rtfx_vs_batch(sweep)
    ax = fig.axes[0]
    title = ax.get_title()
    for part in ("voxtral_mini_3b (full)", "whisper_large_v3 (full)", "synthetic", "NVIDIA H100 80GB HBM3 x1",
                 "random weights"):  # fmt: skip
        assert part in title
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "8", "32"]  # numbers, not 2^0, 2^3, 2^5
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert "100" in labels and not any("^" in label or "e" in label for label in labels)
    bars = _errorbars(ax)
    assert len(bars) == 2 and all(c.has_yerr for c in bars)
    # voxtral_patched: RTFx 10 * batch, its bar at batch 1 its run's interval (over three passes)
    line, _caps, (segments,) = sorted(bars, key=lambda c: -c.lines[0].get_ydata()[0])[0].lines
    assert list(line.get_ydata()) == pytest.approx([10 / 1.0 * b for b in (1, 8, 32)], rel=1e-6)
    lows_highs = [tuple(seg[:, 1]) for seg in segments.get_segments()]
    (first,) = [r for r in sweep if r.summary.engine == "voxtral_patched" and r.summary.batch_size == 1]
    low, high = first.summary.rtfx_ci
    assert low < 9.5 and high > 10.5 and lows_highs[0] == pytest.approx((low, high), rel=1e-6)
    assert {t.get_text() for t in ax.get_legend().get_texts()} == {"voxtral_patched", "openai_whisper"}
    assert "95% CI" in ax.get_legend().get_title().get_text()
    save(fig, tmp_path / "plot.png")
    assert (tmp_path / "plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_one_batch_size_or_no_wer_says_why_no_figure(tmp_path):
    make_run(tmp_path / "a", engine="voxtral_patched", batch_size=4, weights="random")
    make_run(tmp_path / "b", engine="voxtral_stock", batch_size=4, weights="random")
    runs = load_runs([str(tmp_path)])
    why = draw_rtfx_vs_batch(runs)
    assert isinstance(why, str) and "every run is at batch size 4" in why
    why = draw_wer_vs_rtfx(runs)
    assert isinstance(why, str) and "no run has a WER" in why
    assert main([str(tmp_path), "--out", str(tmp_path / "out")]) == 0
    text = (tmp_path / "out" / "comparison.md").read_text()
    assert "No RTFx-vs-batch plot: every run is at batch size 4" in text and "No WER-vs-RTFx plot" in text
    assert not list((tmp_path / "out").glob("*.png"))


def test_wer_vs_rtfx_draws_the_pareto_front(tmp_path):
    make_run(
        tmp_path / "fast", engine="voxtral_patched", seconds_per_batch=0.1, errors=[3] * 20, noise=0
    )  # RTFx 100, 30%
    make_run(tmp_path / "accurate", engine="openai_whisper", seconds_per_batch=0.5, noise=0)  # RTFx 20, WER 10%
    make_run(tmp_path / "dominated", engine="voxtral_stock", seconds_per_batch=1.0, errors=[2] * 20)  # 10, 20%
    fig = draw_wer_vs_rtfx(load_runs([str(tmp_path)]))
    ax = fig.axes[0]
    assert "pretrained weights" in ax.get_title() and ax.get_xscale() == "log"
    (front,) = [line for line in ax.get_lines() if line.get_label() == "Pareto front"]
    assert list(front.get_xdata()) == pytest.approx([20, 100], rel=1e-6)  # the dominated run is off the front
    assert list(front.get_ydata()) == pytest.approx([10, 30])
    assert ax.get_ylim()[0] == 0  # WER from 0: no magnified band
    assert all(c.has_xerr for c in _errorbars(ax))
    save(fig, tmp_path / "x.png")


def test_html_report_is_one_self_contained_page(tmp_path, capsys):
    for engine, seconds, errors in (("voxtral_patched", 0.2, 1), ("openai_whisper", 0.5, 2)):
        for batch in (1, 8):
            make_run(tmp_path / "runs" / f"{engine}{batch}", engine=engine, batch_size=batch,
                     seconds_per_batch=seconds, errors=[errors] * 20)  # fmt: skip
    out = tmp_path / "out"
    assert main([str(tmp_path / "runs"), "--out", str(out), "--html"]) == 0
    page = (out / "report.html").read_text()
    assert "report.html" in capsys.readouterr().out
    assert not re.search(r"(src|href)=\"(?!data:)", page)  # nothing fetched: every image and icon inline
    assert "<script" not in page
    assert page.count("<table>") == 1 and page.count("<tbody><tr>") == 1 and page.count("<tr>") == 1 + 4
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(images) == 2  # WER vs RTFx and RTFx vs batch
    assert all(base64.b64decode(data)[:4] == b"\x89PNG" for data in images)
    assert "Recommended: voxtral_patched" in page and "Hardware: NVIDIA H100 80GB HBM3 x1" in page
