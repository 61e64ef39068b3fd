"""A load level's run folder, written from the requests it logged: the same files and summary
as an offline run, so bench.report and bench.gate read it.

Throughput is RTF as offline: wall seconds over audio seconds. Its rows (batches.parquet) are
blocks of `concurrency` consecutive answers, each with the wall time since the answer before
it (the session's start for the first) and the audio it transcribed: they sum to the level's
wall time, so the sum over sum is the throughput and the same bootstrap over rows gives its
interval. Latency percentiles
are over answered requests, each with a bootstrap interval over requests.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import OmegaConf

from bench import stats
from bench.analysis.table import markdown, readable
from bench.data.loading import utterances_fingerprint
from bench.pipeline.record import BatchRow, DatasetRecord, Summary, batch_frame
from bench.pipeline.results import corpus_wer, write_json, write_parquet
from bench.wer import utterance_errors

LEVEL_FILE = "requests.jsonl"  # one line per session start and per answered request, appended
THROUGHPUT_METHOD = ("wall time over audio of the answered requests; 95% bootstrap over blocks of `concurrency` "
                     "consecutive answers (their wall time and audio), 2000 resamples")  # fmt: skip


def _lines(folder: Path) -> list[dict]:
    path = folder / LEVEL_FILE
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:  # the line a killed client was writing
            continue
    return out


def read_records(folder: Path) -> list[dict]:
    return [line for line in _lines(folder) if "i" in line]


def read_server_metrics(folder: Path) -> dict:
    """What the server's /metrics said of the level, over its sessions: the batches it formed
    by size (summed), its compiles, graph captures and uncompiled decodes after start-up (the
    last session's count: a server's counts since its own start). None where a session's server
    did not say."""
    said = [line["server_metrics"] for line in _lines(folder) if "server_metrics" in line]
    sizes = [s["batch_sizes"] for s in said]
    total = None
    if said and all(n is not None for n in sizes):
        total = {}
        for counts in sizes:
            for size, n in counts.items():
                total[int(size)] = total.get(int(size), 0) + n
        total = dict(sorted(total.items()))
    last = said[-1] if said else {}
    return {"batch_sizes": total, "compiles_after_startup": last.get("compiles_after_startup"),
            "graph_captures_after_startup": last.get("graph_captures_after_startup"),
            "uncompiled_decodes_after_startup": last.get("uncompiled_decodes_after_startup")}  # fmt: skip


def ttft_note(ttft_count: int, answered: int, streamed: bool) -> str | None:
    """Why time to first text is missing for some or all answers (None: every answer has one)."""
    if not streamed:
        return "not measured: the requests were not streamed (bench.load --stream)"
    if ttft_count == 0:
        return "no answer sent text before its end (the server streams no deltas for this engine or these clips)"
    if ttft_count < answered:
        return (f"over the {ttft_count} of {answered} answers that sent text before their end; the other "
                f"{answered - ttft_count} came whole (e.g. a long clip, which is not streamed)")  # fmt: skip
    return None


def goodput(rows: pd.DataFrame, slo_s: float | None) -> dict | None:
    """The share of requests answered (200) within the latency objective, every request sent
    counted (a refusal or a failure misses it), with Wilson's 95% interval."""
    if slo_s is None:
        return None
    good = int(((rows.status == "ok") & (rows.latency_s <= slo_s)).sum())
    return {"slo_s": slo_s, "good": good, "requests": len(rows), "share": good / len(rows) if len(rows) else None,
            "ci": stats.proportion_ci(good, len(rows)), "method": "answered with status 200 within slo_s, over "
            "every request sent; Wilson's 95% score interval"}  # fmt: skip


def read_sessions(folder: Path) -> list[dict]:
    return [line["session"] for line in _lines(folder) if "session" in line]


def intervals(records: list[dict], sessions: list[dict], block: int) -> list[tuple[float, float]]:
    """(wall seconds, audio answered) per block of `block` consecutive answers: from the answer
    before the block (or the session's start) to the block's last. A block is one round of the
    clients, so answers that arrive together (one server batch) stay in one row."""
    starts = sorted(s["started"] for s in sessions)
    out = []
    for k, start in enumerate(starts):
        end = starts[k + 1] if k + 1 < len(starts) else float("inf")
        answered = sorted((r for r in records if start <= r["sent"] < end), key=lambda r: r["ended"])
        previous = start
        for first in range(0, len(answered), block):
            rows = answered[first : first + block]
            audio = sum(r["audio_s"] for r in rows if r["status"] == 200)
            out.append((rows[-1]["ended"] - previous, float(audio)))
            previous = rows[-1]["ended"]
    return out


def write_level(folder: Path, cfg, utterances, card: dict, url: str, level: int, args) -> Summary:
    records, sessions = read_records(folder), read_sessions(folder)
    references = {u.id: u.reference for u in utterances}
    served = card.get("bench") or {}
    score = served.get("weights", "pretrained") == "pretrained" and any(references.values())
    rows = _rows(records, references, cfg.dataset.language, score)
    ok = rows[rows.status == "ok"]
    gaps = intervals(records, sessions, level)
    batches = batch_frame([BatchRow(0, k, 1, audio, wall, float("nan"), 0) for k, (wall, audio) in enumerate(gaps)])
    wall, audio = float(sum(g for g, _ in gaps)), float(ok.duration_s.sum())
    ci = stats.ratio_ci(batches.processing_s, batches.audio_s, batches.repeat) if audio else None
    latency, ttft = ok.latency_s.to_numpy(float), ok.ttft_s.dropna().to_numpy(float)
    wer, wer_details = corpus_wer(ok) if score else (None, None)
    statuses = rows.http_status.astype(str).value_counts().to_dict()
    online = {
        "url": url, "served_model": card.get("id"), "server": card.get("owned_by"), "concurrency": level,
        "rate": args.rate, "arrival": args.arrival if args.rate else "closed loop", "stream": args.stream,
        "requests_planned": args.requests, "statuses": statuses, "sessions": sessions,
        "throughput_requests_per_s": len(ok) / wall if wall else None, "throughput_method": THROUGHPUT_METHOD,
        "latency_ci": {f"p{p}": stats.percentile_ci(latency, p) for p in (50, 90, 99)},
        "ttft": stats.percentiles(ttft), "ttft_ci": {f"p{p}": stats.percentile_ci(ttft, p) for p in (50, 90, 99)},
        "ttft_note": ttft_note(len(ttft), len(ok), args.stream), "goodput": goodput(rows, args.slo_p99_s),
        **read_server_metrics(folder),
        "server_environment": served.get("environment"),
    }  # fmt: skip
    p = stats.percentiles(latency)
    summary = Summary(
        engine=f"load:{card.get('owned_by', 'server')}", model=str(card.get("id")),
        weights=served.get("weights", "pretrained"), scale=served.get("scale", "full"),
        dtype=served.get("dtype", "unknown").removeprefix("torch."), batch_size=level,
        dataset=DatasetRecord(name=cfg.dataset.name, source=str(cfg.dataset.source), split=cfg.dataset.split,
                              limit=cfg.run.limit, language=cfg.dataset.language,
                              fingerprint=utterances_fingerprint(utterances)),
        repeats=1, n_utterances=len(rows), n_failed=int((rows.status != "ok").sum()),
        failures={"reasons": rows.error.dropna().value_counts().head(10).to_dict()},
        audio_seconds=audio, processing_seconds=wall, rtf=wall / audio if audio else None,
        rtfx=audio / wall if wall and audio else None, rtfx_ci=list(ci) if ci else None,
        rtfx_ci_method=THROUGHPUT_METHOD, latency_p50=p["p50"], latency_p90=p["p90"], latency_p99=p["p99"],
        wer=wer,
        wer_details=wer_details,
        wer_note=None if score else "not scored: the server runs random weights, or the clips have no references",
        energy_note="not measured: a load run sees the server from outside (measure energy with python -m bench)",
        environment={"hardware": served.get("hardware") or f"the server at {url}", "client": environment_of_client()},
        online=online,
    )  # fmt: skip
    write_parquet(folder / "utterances.parquet", rows)
    write_parquet(folder / "batches.parquet", batches)
    (folder / "config.yaml").write_text(OmegaConf.to_yaml({"load": {k: str(v) if isinstance(v, Path) else v
                                                                    for k, v in vars(args).items()},
                                                           "dataset": OmegaConf.to_container(cfg.dataset, resolve=True),
                                                           "run": {"limit": cfg.run.limit}}))  # fmt: skip
    write_json(folder / "summary.json", summary.to_dict())
    return summary


def environment_of_client() -> dict:
    import torch

    from bench.host.environment import environment

    return environment(torch.device("cpu"))


def _rows(records: list[dict], references: dict, language: str, score: bool) -> pd.DataFrame:
    rows = []
    for r in sorted(records, key=lambda r: r["i"]):
        row = {"request": r["i"], "id": r["id"], "duration_s": r["audio_s"], "reference": references.get(r["id"]),
               "hypothesis": r["text"], "latency_s": r["latency_s"], "ttft_s": r["ttft_s"], "http_status": r["status"],
               "status": "ok" if r["status"] == 200 else "failed", "error": r["error"]}  # fmt: skip
        if score and r["status"] == 200:
            row |= asdict(utterance_errors(row["reference"] or "", r["text"] or "", language))
        rows.append(row)
    frame = pd.DataFrame(rows)
    for column in ("ttft_s", "latency_s"):
        frame[column] = pd.to_numeric(frame[column]) if column in frame else np.nan
    return frame


def load_table(folders: list[Path]) -> str:
    """Throughput and latency against concurrency, one row per level; then what the server
    said it did (the batch sizes it formed, its compiles after start-up), and why a figure is
    missing where one is."""
    out, server, notes = [], [], {}
    for folder in folders:
        s = Summary.read(folder)
        o, ci = s.online, s.online["latency_ci"]
        row = {"concurrency": s.batch_size, "requests": s.n_utterances, "failed": s.n_failed, "RTFx": s.rtfx,
               "RTFx 95% CI": _interval(s.rtfx_ci), "req/s": o["throughput_requests_per_s"],
               "p50 s": s.latency_p50, "p50 95% CI": _interval(ci["p50"]), "p99 s": s.latency_p99,
               "p99 95% CI": _interval(ci["p99"]), "TTFT p50 s": _or_na(o["ttft"]["p50"])}  # fmt: skip
        if good := o.get("goodput"):
            row[f"goodput (<= {good['slo_s']:g} s)"] = good["share"]
            row["goodput 95% CI"] = _interval(good["ci"])
        out.append(row | {"WER": s.wer})
        server.append({"concurrency": s.batch_size, "batches by size": _sizes(o.get("batch_sizes")),
                       "compiles after start-up": _or_na(o.get("compiles_after_startup")),
                       "graph captures after start-up": _or_na(o.get("graph_captures_after_startup")),
                       # None: a bench.serve from before 2026-12-07 did not count them (_said_by_some)
                       "uncompiled decodes after start-up": o.get("uncompiled_decodes_after_startup")})  # fmt: skip
        if o.get("ttft_note"):
            notes.setdefault(("TTFT", o["ttft_note"]), []).append(str(s.batch_size))
        if o.get("batch_sizes") is None:
            unknown = "n/a: the server has no bench /metrics, so its batches and compiles are not known"
            notes.setdefault(("Server", unknown), []).append(str(s.batch_size))
    first = Summary.read(folders[0])
    title = f"# Load: {first.model} at {first.online['url']} ({first.engine}), {first.dataset.name}\n\n"
    by = _measured_by([Summary.read(f) for f in folders])
    lines = [f"Server hardware: {first.hardware}; measured by {by}.\n", markdown(pd.DataFrame(out))]
    lines += ["What the server did (its /metrics before and after each level: batches it ran, by clips per batch):\n",
              markdown(pd.DataFrame(_said_by_some(server, "uncompiled decodes after start-up")))]  # fmt: skip
    lines += [f"{what} at concurrency {', '.join(levels)}: {note}.\n" for (what, note), levels in notes.items()]
    return title + "\n".join(lines)


def _measured_by(summaries: list[Summary]) -> str:
    """Which bench served and which loaded the levels (bench.engines._history.measured_version:
    a commit's source where the run's own record was stale), with its commit."""
    from bench.engines._history import measured_version

    by = set()
    for s in summaries:
        for role, env in (("server", (s.online or {}).get("server_environment") or {}),
                          ("client", s.environment.get("client") or s.environment)):  # fmt: skip
            commit = (env.get("git_commit") or "")[:7]
            by.add(
                (
                    role,
                    f"bench {measured_version(env) or 'of no recorded version'}" + (f" at {commit}" if commit else ""),
                )
            )
    return "; ".join(f"{role}: {what}" for role, what in sorted(by, key=lambda b: b[0] != "server"))


def _sizes(counts: dict | None) -> str:
    if counts is None:
        return "n/a"
    return ", ".join(f"{size}: {n}" for size, n in sorted((int(k), v) for k, v in counts.items())) or "none"


def _said_by_some(rows: list[dict], column: str) -> list[dict]:
    """The rows with `column` n/a where a level's server did not say it, or without it where none did."""
    if all(row[column] is None for row in rows):
        return [{k: v for k, v in row.items() if k != column} for row in rows]
    return [row | {column: _or_na(row[column])} for row in rows]


def _or_na(value):
    return "n/a" if value is None else value


def _interval(ci) -> str:
    return f"[{readable(ci[0])}, {readable(ci[1])}]" if ci else "-"
