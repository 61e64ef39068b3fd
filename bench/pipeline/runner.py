"""One run, in one direction: config -> dataset -> engine -> measurements -> rows -> run folder."""

from __future__ import annotations

import gc
import sys
import time
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from bench.data import dataset_name, load_utterances, utterances_fingerprint
from bench.engines import engine_class
from bench.errors import BenchError
from bench.host.environment import environment
from bench.host.hub_access import go_offline_if_unreachable
from bench.host.libraries import quiet_libraries
from bench.pipeline import progress
from bench.pipeline.measure import measure_side_by_side
from bench.pipeline.record import Summary
from bench.pipeline.results import batch_rows, summarize, utterance_rows, write_json, write_parquet

DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise BenchError(f"device={name} but torch sees no CUDA GPU (torch {torch.__version__}); use device=cpu")
    return device


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if name not in DTYPES:
        raise BenchError(f"dtype={name!r}: use one of auto, {', '.join(DTYPES)}")
    return DTYPES[name]


def release_device_memory(device: torch.device) -> None:
    """Between multirun jobs in one process: free the last job's memory and counters."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    if hasattr(torch, "_dynamo"):
        torch._dynamo.reset()


def partner_engine_config(name: str):
    """An engine's config (its YAML over its schema), for run.paired_with (a former name taken,
    with a line that says so, as engine= takes it)."""
    from bench.config import CONF_DIR
    from bench.engines import accept_former_name, engine_config_classes

    name = accept_former_name(name)
    classes = engine_config_classes()
    if name not in classes:
        raise BenchError(f"run.paired_with: unknown engine {name!r}; choose from: {', '.join(classes)}")
    yaml = OmegaConf.load(CONF_DIR / "engine" / f"{name}.yaml")
    yaml.pop("defaults", None)
    return OmegaConf.merge(OmegaConf.structured(classes[name]), yaml)


def run(cfg: DictConfig, run_dir: Path) -> Summary:
    """Measure cfg.engine (and any run.paired_with engines beside it); write the run folder(s)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    quiet_libraries(cfg.run.verbose)
    device = resolve_device(cfg.device)
    dtype = resolve_dtype(cfg.dtype, device)
    engine_configs = [cfg.engine, *(partner_engine_config(name) for name in cfg.run.paired_with)]
    engine_types = [engine_class(c.name) for c in engine_configs]
    release_device_memory(device)

    if cfg.run.on_error not in ("skip", "fail"):
        raise BenchError(f"run.on_error={cfg.run.on_error!r}: use skip or fail")
    offline = go_offline_if_unreachable(cfg)
    if offline:
        print(f"bench: {offline}", file=sys.stderr)
    # a dataset.path= override names its dataset after the path, not the YAML it was made on
    cfg.dataset.name = dataset_name(cfg.dataset)
    rejected = [] if cfg.run.on_error == "skip" else None
    utterances = load_utterances(cfg.dataset, cfg.run.limit, cfg.run.progress, rejected)
    rejected = rejected or []
    if not utterances:
        why = f"all {len(rejected)} were unusable, e.g. {rejected[0].id}: {rejected[0].reason}" if rejected else ""
        raise BenchError(f"dataset {cfg.dataset.name} gave no utterances (run.limit={cfg.run.limit}) {why}".strip())

    names = [c.name for c in engine_configs]
    folders = [run_dir, *(run_dir / "paired" / name for name in names[1:])]
    fingerprint = progress.fingerprint(
        OmegaConf.to_container(cfg, resolve=True), [u.id for u in utterances], [f.id for f in rejected]
    )
    prior = _prior_session(cfg, run_dir, fingerprint, names)
    if prior and _complete(prior, utterances, cfg) and (run_dir / "summary.json").is_file():
        print(f"{run_dir} is complete: every batch of its {cfg.run.repeats} timed pass(es) was measured; left as it is")
        return Summary.read(run_dir)

    def save_progress(measurements):
        for folder, m in zip(folders, measurements, strict=True):  # readable partial rows, unscored
            folder.mkdir(parents=True, exist_ok=True)
            rows = utterance_rows(utterances, m, cfg.dataset.language, False, rejected)
            write_parquet(folder / "utterances.parquet", rows)
            write_parquet(folder / "batches.parquet", batch_rows(m))
        progress.save(run_dir, fingerprint, names, measurements)  # last: what resume trusts

    engines = [
        t(c, cfg.model, device, dtype, cfg.dataset.language) for t, c in zip(engine_types, engine_configs, strict=True)
    ]
    profile = None
    try:
        with progress.Saver(save_progress) as saver:  # on exit, also by an error: the last finished batch saved
            measurements = measure_side_by_side(engines, utterances, cfg.run, prior, saver)
        reports = [engine.report() for engine in engines]
        precisions = [engine.precision for engine in engines]  # after load: what the engine settled on
        if cfg.profile:
            profile = _profile(engines[0], utterances, cfg, measurements[0], run_dir)
    finally:
        for engine in engines:
            engine.close()
        del engines
        release_device_memory(device)

    env = environment(device)
    summaries = []
    for k, (engine_cfg, measurement, report) in enumerate(zip(engine_configs, measurements, reports, strict=True)):
        folder = folders[k]
        summary = _write_run(folder, cfg, engine_cfg, precisions[k], device, utterances, rejected, measurement, env)
        summary.engine_report = report
        summary.paired_with = [n for n in names if n != engine_cfg.name]
        summary.profile = profile.summary if profile and k == 0 else None
        write_json(folder / "summary.json", summary.to_dict())
        summaries.append(summary)
    if profile:
        print(profile.verdict)
    return summaries[0]


def _complete(prior, utterances, cfg) -> bool:
    """Whether an earlier session measured every batch of every pass, for every engine."""
    from bench.pipeline.measure import make_batches

    planned = cfg.run.repeats * len(make_batches(utterances, cfg.run.batch_size))
    return all(len(m.done) >= planned for m in prior)


def _prior_session(cfg, run_dir: Path, fingerprint: dict, names: list[str]):
    """With run.resume, what earlier sessions of this run measured; without, a guard against
    measuring into a folder that already holds a run."""
    if not cfg.run.resume:
        if (run_dir / progress.FILE).exists():
            raise BenchError(
                f"{run_dir} already holds a run ({progress.FILE}): continue it with run.resume=true, "
                "or choose another hydra.run.dir"
            )
        return None
    prior = progress.load(run_dir, fingerprint, names)
    done = len(prior[0].done) if prior else 0
    print(f"resuming {run_dir}: {done} batches were measured before" if prior else f"nothing to resume in {run_dir}")
    return prior


def _write_run(folder: Path, cfg, engine_cfg, precision, device, utterances, rejected, measurement, env) -> Summary:
    folder.mkdir(parents=True, exist_ok=True)
    score = cfg.model.weights == "pretrained"
    rows = utterance_rows(utterances, measurement, cfg.dataset.language, score, rejected)
    batches = batch_rows(measurement)
    header = {
        "engine": engine_cfg.name,
        "patches": list(engine_cfg.patches),
        "engine_patches": list(engine_class(engine_cfg.name).PATCHES),
        "model": cfg.model.name,
        "model_id": cfg.model.id,
        "weights": cfg.model.weights,
        "scale": cfg.model.scale,
        "seed": cfg.model.seed,
        "dtype": precision,
        "device": str(device),
        "batch_size": cfg.run.batch_size,
        "warmup_batches": cfg.run.warmup_batches,
        "repeats": cfg.run.repeats,
        "length_matched": cfg.model.weights == "random",
        "dataset": {
            "name": cfg.dataset.name,
            "source": cfg.dataset.source,
            "path": cfg.dataset.path if cfg.dataset.source == "hub" else None,
            "config": cfg.dataset.config,
            "split": cfg.dataset.split,
            "limit": cfg.run.limit,
            "language": cfg.dataset.language,
        },
    }
    header["dataset"]["fingerprint"] = utterances_fingerprint(utterances, rejected)
    summary = summarize(
        header=header,
        utterances=utterances,
        m=measurement,
        rows=rows,
        batches=batches,
        score=score,
        environment=env,
        price=cfg.run.gpu_hourly_price,
    )
    config = OmegaConf.to_container(cfg, resolve=True)
    config["engine"] = OmegaConf.to_container(engine_cfg, resolve=True)
    (folder / "config.yaml").write_text(OmegaConf.to_yaml(config))
    write_parquet(folder / "utterances.parquet", rows)
    write_parquet(folder / "batches.parquet", batches)
    return summary


def _profile(engine, utterances, cfg, measurement, run_dir: Path):
    """Profile the first batch once more, warm, after the timed passes."""
    from bench.pipeline.measure import make_batches
    from bench.pipeline.profile import profile_batch, write_profile

    began = time.perf_counter()
    batch = make_batches(utterances, cfg.run.batch_size)[0]
    targets = [measurement.target_tokens[u.id] for u in batch] if measurement.target_tokens else None
    result, trace = profile_batch(engine, [u.audio for u in batch], targets)
    write_profile(result, trace, run_dir)
    result.summary["seconds"] = time.perf_counter() - began  # the profile's share of the point (bench.lab.budget)
    return result
