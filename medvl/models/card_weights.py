"""Published weight files against a card: find them, read their key layout, map the keys, compare, load.

:func:`check_weights` answers "does this file or folder match the card?" before anything runs: it reads only the
tensor names and shapes (the safetensors header; a torch zip file memory-mapped), maps the keys as the card says and
compares them with the architecture built on the ``meta`` device (no memory, no compute). It reports missing,
unexpected and mis-shaped keys, a truncated file, and a classification head the card does not have.

Weights are read safely: safetensors, or torch files with ``weights_only=True`` (a file that needs full unpickling is
refused unless the caller trusts it).
"""

from __future__ import annotations

import json
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medvl.errors import InputError
from medvl.models.card import ModelCard, WeightsSpec

__all__ = ["WeightsReport", "check_weights", "find_weight_file", "map_keys", "read_shapes", "read_state"]

_HEAD = re.compile(r"(^|\.)(head|fc|classifier|heads)\.(weight|bias|fc\.weight|fc\.bias)$")


@dataclass
class WeightsReport:
    """What :func:`check_weights` found (every list holds mapped key names)."""

    card: str
    file: str
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mis_shaped: list[tuple[str, list[int], list[int]]] = field(default_factory=list)
    matched: int = 0
    expected: int = 0
    config_errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mis_shaped or self.config_errors)

    def head_keys(self) -> list[str]:
        return [k for k in self.unexpected if _HEAD.search(k)]

    def problem(self) -> str:
        """One line naming what differs (empty when the weights match)."""
        parts = [f"{self.config_errors[0]}" + (f" (and {len(self.config_errors) - 1} more)"
                                               if len(self.config_errors) > 1 else "")] if self.config_errors else []
        if self.mis_shaped:
            k, got, want = self.mis_shaped[0]
            parts.append(f"{len(self.mis_shaped)} mis-shaped (e.g. '{k}': file {got}, card {want})")
        if self.missing:
            parts.append(f"{len(self.missing)} missing (e.g. {', '.join(self.missing[:2])})")
        if self.unexpected:
            heads = self.head_keys()
            what = (f"; {', '.join(heads[:2])} look like a classification head the card does not have" if heads
                    else "")
            parts.append(f"{len(self.unexpected)} unexpected (e.g. {', '.join(self.unexpected[:2])}{what})")
        return "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {"card": self.card, "file": self.file, "ok": self.ok, "matched": self.matched,
                "expected": self.expected, "missing": self.missing, "unexpected": self.unexpected,
                "mis_shaped": [{"key": k, "file": g, "card": w} for k, g, w in self.mis_shaped],
                "config_errors": self.config_errors, "warnings": self.warnings}


# ------------------------------------------------------------------------------------------------ files
def find_weight_file(card: ModelCard, path: str | Path) -> Path:
    """The card's weight file in ``path`` (a file, or a folder holding one of ``weights.files``)."""
    path = Path(path)
    if path.is_file():
        return path
    if not path.is_dir():
        raise InputError(path, "weights file or folder not found")
    for name in card.weights.files:
        if (path / name).is_file():
            return path / name
    present = sorted(p.name for p in path.iterdir())[:6]
    raise InputError(path, f"no weight file of card '{card.name}' here (expected one of {', '.join(card.weights.files)}"
                           f"; found {', '.join(present) or 'nothing'})")


def _safetensors_shapes(path: Path) -> dict[str, list[int]]:
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            raise InputError(path, "truncated safetensors file (no header)")
        (n,) = struct.unpack("<Q", head)
        if n > size - 8:
            raise InputError(path, f"truncated safetensors file (header of {n} bytes, file of {size})")
        try:
            header = json.loads(fh.read(n))
        except ValueError:
            raise InputError(path, "not a safetensors file (unreadable header)") from None
    header.pop("__metadata__", None)
    end = max((int(v["data_offsets"][1]) for v in header.values()), default=0)
    if 8 + n + end > size:
        raise InputError(path, f"truncated safetensors file ({size} bytes, the header needs {8 + n + end})")
    return {k: list(v["shape"]) for k, v in header.items()}


def _torch_load(path: Path, trust_pickle: bool, mmap: bool) -> Any:
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=not trust_pickle, mmap=mmap)
    except RuntimeError as exc:
        text = str(exc)
        if "central directory" in text or "zip archive" in text or "unexpected EOF" in text:
            raise InputError(path, "truncated or corrupt torch file (its zip archive is incomplete)") from None
        if mmap and "mmap" in text:
            return _torch_load(path, trust_pickle, mmap=False)  # legacy (non-zip) torch files cannot be mapped
        raise InputError(path, f"cannot read weights ({' '.join(text.split())[:160]})") from None
    except EOFError:
        raise InputError(path, "truncated torch file") from None
    except Exception as exc:  # pickle.UnpicklingError and friends
        if not trust_pickle:
            raise InputError(path, "refused: this file needs full unpickling (weights_only=True failed); convert it "
                                   "to safetensors or pass --trust-pickle if you trust it") from None
        raise InputError(path, f"cannot read weights ({type(exc).__name__})") from None


def _unwrap(state: Any, spec: WeightsSpec, path: Path) -> dict[str, Any]:
    for key in spec.unwrap:
        if not isinstance(state, dict) or not isinstance(state.get(key), dict):
            raise InputError(path, f"expected the weights under the key '{key}' (the card's weights.unwrap)")
        state = state[key]
    if not isinstance(state, dict):
        raise InputError(path, "the file does not hold a state dict")
    return state


def read_shapes(card: ModelCard, file: Path, trust_pickle: bool = False) -> dict[str, list[int]]:
    """Tensor names and shapes of ``file`` with the card's key mapping applied, without reading tensor data."""
    if file.suffix == ".safetensors":
        if card.weights.unwrap:
            raise InputError(file, "safetensors files are flat; the card's weights.unwrap does not apply")
        shapes = _safetensors_shapes(file)
    else:
        state = _unwrap(_torch_load(file, trust_pickle, mmap=True), card.weights, file)
        shapes = {k: list(v.shape) for k, v in state.items() if hasattr(v, "shape")}
    return map_keys(shapes, card.weights)


def read_state(card: ModelCard, file: Path, trust_pickle: bool = False, part: str | None = None) -> dict[str, Any]:
    """The file's tensors with the card's key mapping applied; with ``part`` (a key prefix such as ``text.``), the
    tensors under that prefix instead of the encoder's (wrappers stripped and unwrapped as for the encoder)."""
    spec = card.weights
    if part is not None:
        from dataclasses import replace

        spec = replace(spec, select_prefix=part, renames=[], ignore=[])
    if file.suffix == ".safetensors":
        from safetensors.torch import load_file

        _safetensors_shapes(file)  # a clear error on a truncated file
        state = load_file(str(file))
    else:
        state = _unwrap(_torch_load(file, trust_pickle, mmap=False), spec, file)
    return map_keys({k: v for k, v in state.items() if hasattr(v, "shape")}, spec)


def map_keys(state: dict[str, Any], spec: WeightsSpec) -> dict[str, Any]:
    """Apply ``strip_prefixes``, ``select_prefix``, ``renames`` and ``ignore`` (in that order) to the keys."""
    out: dict[str, Any] = {}
    renames = [(re.compile(p), r) for p, r in spec.renames]
    ignore = [re.compile(p) for p in spec.ignore]
    for key, value in state.items():
        for prefix in spec.strip_prefixes:
            if key.startswith(prefix):
                key = key[len(prefix):]
        if spec.select_prefix:
            if not key.startswith(spec.select_prefix):
                continue
            key = key[len(spec.select_prefix):]
        for pattern, repl in renames:
            key = pattern.sub(repl, key)
        if not any(p.search(key) for p in ignore):
            out[key] = value
    return out


# ------------------------------------------------------------------------------------------------ compare
def expected_shapes(card: ModelCard, kwargs: dict[str, Any] | None = None) -> dict[str, list[int]]:
    """Names and shapes of the card's architecture, built on the meta device."""
    from medvl.models.published import build_card_backbone

    backbone = build_card_backbone(card, kwargs=kwargs, device="meta")
    return {k: list(v.shape) for k, v in backbone.module.state_dict().items()}


def compare(card: ModelCard, file: str, found: dict[str, list[int]], want: dict[str, list[int]]) -> WeightsReport:
    optional = [re.compile(p) for p in card.weights.optional]
    report = WeightsReport(card=card.name, file=file, expected=len(want))
    report.missing = sorted(k for k in want if k not in found and not any(p.search(k) for p in optional))
    report.unexpected = sorted(k for k in found if k not in want)
    report.mis_shaped = sorted((k, found[k], want[k]) for k in found if k in want and found[k] != want[k])
    report.matched = sum(1 for k in found if k in want and found[k] == want[k])
    return report


def check_weights(card: ModelCard, path: str | Path, trust_pickle: bool = False,
                  kwargs: dict[str, Any] | None = None) -> WeightsReport:
    """Compare the weights at ``path`` with ``card`` (nothing is loaded or run), and the config files published beside
    them (:mod:`medvl.models.drift`). ``kwargs`` overrides builder kwargs (the tests' reduced variants)."""
    from medvl.models.drift import config_drift

    file = find_weight_file(card, path)
    found = read_shapes(card, file, trust_pickle)
    if not found:
        raise InputError(file, f"no tensors left after the key mapping of card '{card.name}' (wrong model?)")
    report = compare(card, str(file), found, expected_shapes(card, kwargs))
    drift = config_drift(card, path)
    report.config_errors, report.warnings = drift.errors, drift.warnings
    return report
