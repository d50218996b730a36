"""Checkpoint folders and safe weight loading.

A model checkpoint is a folder::

    model.safetensors     every parameter and buffer of the MultiModalModel
    config.json           {"format": "medvl-model", "medvl_version": ..., "model": ModelConfig}
    medvl_version         the medvl version that wrote it
    tokenizer files       (tokenizer.json, vocab.txt, ...) of the text tower

The folder is written beside its final place and renamed into it, so a crash never leaves a half-written checkpoint
under the final name. Weights load safely: safetensors, or torch files with ``weights_only=True``; pickle-based
formats are refused unless ``trust_pickle=True`` is passed explicitly.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from medvl import __version__
from medvl.errors import ConfigError, InputError

__all__ = [
    "CHECKPOINT_FORMAT",
    "atomic_dir",
    "is_checkpoint",
    "load_checkpoint",
    "load_state_file",
    "read_checkpoint_config",
    "save_checkpoint",
]

CHECKPOINT_FORMAT = "medvl-model"
WEIGHTS = "model.safetensors"
CONFIG = "config.json"
PICKLE_SUFFIXES = (".pkl", ".pickle", ".ckpt")
TORCH_SUFFIXES = (".pt", ".pth", ".bin")


@contextlib.contextmanager
def atomic_dir(target: str | Path) -> Iterator[Path]:
    """Yield a temporary folder beside ``target``; on success it replaces ``target`` (old content removed)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp-medvl", dir=target.parent))
    try:
        yield tmp
        _fsync_tree(tmp)
        old = None
        if target.exists():
            old = target.with_name(f".{target.name}.old.tmp-medvl")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(target, old)
        os.replace(tmp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _fsync_tree(folder: Path) -> None:
    for p in folder.rglob("*"):
        if p.is_file():
            with open(p, "rb") as fh:
                os.fsync(fh.fileno())


def _tower_kwargs(spec_options: dict[str, Any], tower: Any) -> dict[str, Any]:
    if hasattr(tower, "checkpoint_kwargs"):
        return tower.checkpoint_kwargs()
    # the checkpoint carries the weights: do not point the rebuilt tower at the original weight file
    return {k: v for k, v in spec_options.items() if k not in ("weights", "pretrained", "checkpoint_path")}


def checkpoint_config(model: Any) -> dict[str, Any]:
    """The model config as written to ``config.json`` (tower options that rebuild the structure without weights)."""
    cfg = model.config.to_dict()
    for modality, spec in cfg["towers"].items():
        spec["options"] = _tower_kwargs(spec["options"], model.towers[modality])
    return cfg


def save_checkpoint(model: Any, folder: str | Path, extra: dict[str, Any] | None = None) -> Path:
    """Write ``model`` (a :class:`MultiModalModel`) as a checkpoint folder, atomically; return the folder."""
    from safetensors.torch import save_model

    folder = Path(folder)
    cfg = checkpoint_config(model)
    tokenizers: dict[str, str] = {}
    with atomic_dir(folder) as tmp:
        save_model(model, str(tmp / WEIGHTS), metadata={"format": "pt", "medvl_version": __version__})
        for modality, tower in model.towers.items():
            if hasattr(tower, "save_tokenizer"):
                sub = "." if modality == "text" else f"tokenizer_{modality}"
                (tmp / sub).mkdir(exist_ok=True)
                tower.save_tokenizer(tmp / sub)
                tokenizers[modality] = sub
        meta = {"format": CHECKPOINT_FORMAT, "medvl_version": __version__, "model": cfg, "tokenizers": tokenizers,
                **(extra or {})}
        (tmp / CONFIG).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        (tmp / "medvl_version").write_text(__version__ + "\n", encoding="utf-8")
    return folder


def is_checkpoint(folder: str | Path) -> bool:
    folder = Path(folder)
    return (folder / WEIGHTS).is_file() and (folder / CONFIG).is_file()


def read_checkpoint_config(folder: str | Path) -> dict[str, Any]:
    """``config.json`` of a checkpoint folder, checked to be a medvl model checkpoint."""
    folder = Path(folder)
    if not is_checkpoint(folder):
        raise InputError(folder, f"not a medvl checkpoint folder (needs {WEIGHTS} and {CONFIG})")
    try:
        meta = json.loads((folder / CONFIG).read_text(encoding="utf-8"))
    except ValueError as exc:
        raise InputError(folder / CONFIG, f"not valid JSON ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != CHECKPOINT_FORMAT:
        raise InputError(folder / CONFIG, f"not a medvl model config (format is not '{CHECKPOINT_FORMAT}')")
    return meta


def load_checkpoint(folder: str | Path, device: str | torch.device = "cpu") -> Any:
    """Rebuild the :class:`MultiModalModel` saved in ``folder`` and load its weights (strictly)."""
    from medvl.models.multimodal import ModelConfig, MultiModalModel

    folder = Path(folder)
    meta = read_checkpoint_config(folder)
    model_cfg = meta["model"]
    for modality, sub in meta.get("tokenizers", {}).items():
        model_cfg["towers"][modality]["options"]["tokenizer_path"] = str((folder / sub).resolve())
    config = ModelConfig.from_dict(model_cfg, source=str(folder / CONFIG))
    model = MultiModalModel(config)
    load_weights_into(model, folder / WEIGHTS)
    return model.to(device).eval()


def load_weights_into(model: torch.nn.Module, path: str | Path) -> None:
    """Load a safetensors state dict into ``model``; mismatched names or shapes are a clear error."""
    state = load_state_file(path)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        what = f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}"
        raise InputError(path, f"weights do not match this model ({what})")
    for name, tensor in state.items():
        if tensor.shape != expected[name].shape:
            raise InputError(path, f"weight '{name}' has shape {list(tensor.shape)}, the model expects "
                                   f"{list(expected[name].shape)}")
    model.load_state_dict(state, strict=True)


def load_state_file(path: str | Path, *, trust_pickle: bool = False) -> dict[str, torch.Tensor]:
    """Read a state dict safely: safetensors; torch files with ``weights_only=True``; pickles only when trusted.

    Args:
        path: a ``.safetensors`` file, a torch file (``.pt``, ``.pth``, ``.bin``) or, with ``trust_pickle``, a pickle.
        trust_pickle: allow arbitrary unpickling (runs code from the file): only for files you made yourself.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "weights file not found")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as exc:  # safetensors raises its own error types
            raise InputError(path, f"not a readable safetensors file ({exc})") from None
    if path.suffix in PICKLE_SUFFIXES and not trust_pickle:
        raise InputError(path, "pickle-based weights are refused (they can run code); convert them to safetensors "
                               "or pass trust_pickle=True if you made this file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=not trust_pickle)
    except Exception as exc:
        if not trust_pickle:
            raise InputError(path, "refused: this file needs full unpickling (weights_only=True failed); convert it to "
                                   "safetensors or pass trust_pickle=True if you trust it") from None
        state = _trusted_pickle(path, exc)
    for key in ("state_dict", "model", "module"):  # training scripts wrap the weights in a dict
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise InputError(path, "the file does not hold a state dict")
    return state


def _trusted_pickle(path: Path, first_error: Exception) -> Any:
    """A plain pickle file (not torch's zip format), read only because the caller trusts it."""
    import pickle

    try:
        with open(path, "rb") as fh:
            return pickle.load(fh)  # noqa: S301 - explicit trust_pickle=True
    except Exception:
        raise InputError(path, f"cannot read weights ({type(first_error).__name__})") from None


def create_model_from(name_or_dir: str | Path | Any, device: str | torch.device = "cpu") -> Any:
    """``create_model``: a registered name, a checkpoint folder, or a :class:`ModelConfig`."""
    from medvl.models.multimodal import ModelConfig, MultiModalModel
    from medvl.models.registry import get_model_config

    if isinstance(name_or_dir, ModelConfig):
        return MultiModalModel(name_or_dir).to(device)
    path = Path(str(name_or_dir)).expanduser()
    if path.is_dir():
        return load_checkpoint(path, device)
    if os.sep in str(name_or_dir) or path.suffix:
        raise InputError(path, "no such checkpoint folder")
    try:
        config = get_model_config(str(name_or_dir))
    except ConfigError:
        raise
    return MultiModalModel(config).to(device)
