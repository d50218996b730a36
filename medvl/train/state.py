"""Resumable training checkpoints.

``<out>/checkpoints/step_0000020/`` is a complete model checkpoint folder (``create_model`` loads it) plus
``trainer_state.pt``: optimizer, scheduler, RNG states, data position, the stage's head and a fingerprint of the
model config. Folders are written beside their final name and renamed into place; ``checkpoints/latest`` (written
atomically after the folder) names the newest one, so a SIGKILL at any moment leaves the previous checkpoint usable.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from medvl.atomic import atomic_dir, atomic_write_text, sweep_temporaries
from medvl.errors import ConfigError, InputError
from medvl.models.checkpoint import save_checkpoint
from medvl.models.weights import load_weights_into

__all__ = ["TrainState", "latest_checkpoint", "load_train_state", "model_fingerprint", "save_train_checkpoint"]

STATE_FILE = "trainer_state.pt"


@dataclass
class TrainState:
    """Where a run is: stage index, optimizer steps done in it and overall, the data position, the seconds the
    stage has trained (its time budget carries over a resume), and what each finished stage did (``finished``:
    name -> steps, seconds, whether its time budget ended it)."""

    stage: int = 0
    step: int = 0
    global_step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    seconds: float = 0.0
    finished: dict[str, dict[str, Any]] = field(default_factory=dict)


def model_fingerprint(model_config: dict[str, Any]) -> str:
    """A hash of the model's structure (tower names and options, embedding width)."""
    text = json.dumps(model_config, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_train_checkpoint(out: Path, model: Any, state: TrainState, fingerprint: str, *,
                          optimizer: Any = None, scheduler: Any = None, head: Any = None, keep: int = 2) -> Path:
    """Write a resumable checkpoint atomically, point ``latest`` at it and prune older ones."""
    ckpt_dir = out / "checkpoints"
    name = f"step_{state.global_step:07d}"
    with atomic_dir(ckpt_dir / name) as tmp:
        save_checkpoint(model, tmp / "model")
        payload = {
            "state": asdict(state),
            "fingerprint": fingerprint,
            "optimizer": optimizer.state_dict() if optimizer is not None else None,
            "scheduler": scheduler.state_dict() if scheduler is not None else None,
            "head": head.state_dict() if head is not None else None,
            "rng": _rng_state(),
        }
        torch.save(payload, tmp / STATE_FILE)
    atomic_write_text(ckpt_dir / "latest", name + "\n")
    _prune(ckpt_dir, keep)
    return ckpt_dir / name


def _prune(ckpt_dir: Path, keep: int) -> None:
    folders = sorted(p for p in ckpt_dir.glob("step_*") if p.is_dir())
    for old in folders[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def latest_checkpoint(out: Path) -> Path | None:
    """The newest complete checkpoint of a run folder (leftover temporaries of a killed run are removed)."""
    ckpt_dir = out / "checkpoints"
    if not ckpt_dir.is_dir():
        return None
    sweep_temporaries(ckpt_dir)
    for leftover in ckpt_dir.glob(".*.tmp-medvl"):
        shutil.rmtree(leftover, ignore_errors=True)
    pointer = ckpt_dir / "latest"
    if pointer.is_file():
        folder = ckpt_dir / pointer.read_text().strip()
        if (folder / STATE_FILE).is_file():
            return folder
    folders = sorted(p for p in ckpt_dir.glob("step_*") if (p / STATE_FILE).is_file())
    return folders[-1] if folders else None


def load_train_state(folder: Path, model: Any, fingerprint: str) -> dict[str, Any]:
    """Check the checkpoint belongs to this model, load its weights into ``model``, restore RNG; return the payload."""
    try:
        payload = torch.load(folder / STATE_FILE, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise InputError(folder / STATE_FILE, f"cannot read the trainer state ({type(exc).__name__})") from None
    if payload.get("fingerprint") != fingerprint:
        raise ConfigError(
            f"{folder}: this checkpoint was written by a different model (config fingerprint "
            f"{payload.get('fingerprint')} != {fingerprint}); resume with the config that wrote it or use a new --out"
        )
    load_weights_into(model, folder / "model" / "model.safetensors")
    from medvl.models.checkpoint import read_checkpoint_config
    from medvl.models.factory import apply_training_record

    # what earlier stages recorded (preprocessing, domains, trained towers) carries on into the final checkpoint
    apply_training_record(model, read_checkpoint_config(folder / "model"), str(folder / "model"))
    _set_rng_state(payload["rng"])
    payload["state"] = TrainState(**payload["state"])
    return payload
