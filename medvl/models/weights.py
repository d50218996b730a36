"""Safe weight loading: safetensors; torch files with ``weights_only=True``; pickles only when trusted.

Pickle-based formats can run code when read, so they are refused unless the caller passes ``trust_pickle=True``
explicitly (for files they made themselves).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from medvl.errors import InputError

__all__ = ["PICKLE_SUFFIXES", "TORCH_SUFFIXES", "load_state_file", "load_weights_into"]

PICKLE_SUFFIXES = (".pkl", ".pickle", ".ckpt")
TORCH_SUFFIXES = (".pt", ".pth", ".bin")


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
