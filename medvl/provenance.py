"""Provenance by content: what made an output, recorded with it by one function and checked by one function.

Every output that holds vectors or tiles (feature ``.h5`` files, embedding files, tile stores, retrieval indexes,
the CT cache and embeddings, the slide viewer's cache) and every prediction record (zero-shot, index, survival JSON)
carries a :class:`Provenance`:

``model``
    a :class:`ModelPrint`: the content hash of the weights (the safetensors bytes), a hash of the model config, the
    tower (modality) the vectors come from, whether they are projected into the joint space, whether the weights are
    a random initialisation, and a readable encoder name (informative only: identity is by content).
``preprocessing``
    the image transform (:class:`medvl.models.transforms.ImageTransformConfig`) or the CT chain
    (``CTPreprocessConfig``) as a mapping.
``tiling``
    the tile grid settings (mpp, size, overlap, minimum tissue), the tissue detection settings and an mpp override.
``input``
    the fingerprint of the input (a slide file, a case file); ``inputs`` per case for a multi-case file.

:func:`differences` is the one rule: an output is reused, or vectors are accepted by a consumer, only when every part
the consumer expects equals the recorded one; otherwise the work is redone, or :func:`require_match` refuses naming
what differs. An output without a record (older medvl, another tool) is refused unless the caller trusts it
explicitly (``--trust-provenance``), and that trust is recorded in what it produces.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medvl import __version__
from medvl.config import Config
from medvl.errors import InputError
from medvl.hashing import config_hash, content_hash
from medvl.log import warn

__all__ = [
    "PARTS",
    "PROVENANCE_KEY",
    "RANDOM_HINT",
    "TRUST_HINT",
    "ModelPrint",
    "Provenance",
    "differences",
    "input_print",
    "parse_provenance",
    "require_match",
    "weights_hash",
]

#: the attribute / metadata key every file format stores the record under (a JSON string)
PROVENANCE_KEY = "medvl_provenance"
#: the parts of a record, in the order differences are reported
PARTS = ("model", "preprocessing", "tiling", "input")
#: how a user accepts vectors that carry no record
TRUST_HINT = "--trust-provenance"
#: how a user asks for random weights (one name everywhere)
RANDOM_HINT = "pass --random-weights (random_weights=True) to use random weights on purpose"
#: files larger than this are fingerprinted from samples (size + first, middle and last MiBs), not read whole
SAMPLED_ABOVE = 256 << 20
_SAMPLE = 4 << 20


@dataclass
class ModelPrint(Config):
    """Which weights made a set of vectors.

    Attributes:
        encoder: a readable name (tower name and architecture, or the checkpoint folder's name).
        weights: content hash of the weights file; ``random:seed=N`` for a seeded random initialisation; ``None``
            for an unseeded one (never equal to anything).
        config: hash of the tower or model config that, with the weights, defines the function.
        modality: the tower the vectors come from (``image``, ``volume``, ...).
        projected: joint-space (projected, L2-normalised) vectors rather than raw tower features.
        random_weights: the weights are a random initialisation, not trained or pretrained ones.
    """

    encoder: str
    weights: str | None
    config: str
    modality: str = "image"
    projected: bool = False
    random_weights: bool = False

    def identity(self) -> str:
        """The encoder id: equal for two prints exactly when they describe the same function."""
        return config_hash([self.weights, self.config, self.modality, self.projected])


@dataclass
class Provenance(Config):
    """What made an output (see the module docstring); a part left ``None`` is not part of this output."""

    model: ModelPrint | None = None
    preprocessing: dict[str, Any] | None = None
    tiling: dict[str, Any] | None = None
    input: str | None = None
    inputs: dict[str, str] | None = None
    trusted: list[str] = field(default_factory=list)
    medvl_version: str = __version__

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, default=str)

    def fingerprint(self) -> str:
        """One hash of every part (the model's identity, preprocessing, tiling, input fingerprints): it changes with
        any of them, and only with them (the medvl version, readable names and trust notes are not part of it)."""
        return config_hash([None if self.model is None else self.model.identity(), self.preprocessing, self.tiling,
                            self.input, self.inputs])

    def space(self) -> Provenance:
        """The parts that define a vector space (model, preprocessing, tiling): what vectors mixed in one index or
        compared with one model must share."""
        return Provenance(model=self.model, preprocessing=self.preprocessing, tiling=self.tiling,
                          trusted=list(self.trusted))

    def with_trust(self, note: str) -> Provenance:
        return self.replace(trusted=[*self.trusted, note])

    def summary(self) -> dict[str, Any]:
        """A short JSON-able view for prediction records: the ids, not every setting."""
        out: dict[str, Any] = {}
        if self.model is not None:
            out["model"] = {"encoder": self.model.encoder, "id": self.model.identity(), "weights": self.model.weights,
                            "random_weights": self.model.random_weights, "projected": self.model.projected}
        for part in ("preprocessing", "tiling"):
            if getattr(self, part) is not None:
                out[part] = config_hash(getattr(self, part))
        if self.input is not None:
            out["input"] = self.input
        if self.trusted:
            out["trusted"] = list(self.trusted)
        return out


def parse_provenance(value: Any) -> Provenance | None:
    """A stored record (JSON text, bytes or a mapping) as a :class:`Provenance`; ``None`` when absent or unreadable
    (an unreadable record counts as no record: it is never trusted)."""
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    try:
        data = json.loads(value) if isinstance(value, str) else value
        return Provenance.from_dict(dict(data))
    except Exception:  # noqa: BLE001 - a damaged record (bad JSON, unknown keys, wrong types) is no record
        return None


# ------------------------------------------------------------------------------------------------ comparing
def _model_differences(stored: ModelPrint | None, expected: ModelPrint) -> list[str]:
    if stored is None:
        return ["no model is recorded"]
    out = []
    if stored.modality != expected.modality:
        out.append(f"they come from the {stored.modality} tower, not the {expected.modality} tower")
    if stored.projected != expected.projected:
        out.append("they are " + ("projected joint-space vectors" if stored.projected else "raw tower features")
                   + ", the model expects " + ("projected ones" if expected.projected else "raw ones"))
    if stored.weights != expected.weights or stored.config != expected.config:
        what = "weights" if stored.weights != expected.weights else "model config"
        out.append(f"they were made by '{stored.encoder}' (id {stored.identity()[:10]}), not by '{expected.encoder}' "
                   f"(id {expected.identity()[:10]}): the {what} differ")
    return out


def _mapping_differences(name: str, stored: dict[str, Any] | None, expected: dict[str, Any]) -> list[str]:
    if stored is None:
        return [f"no {name} is recorded"]
    flat_s, flat_e = _flatten(stored), _flatten(expected)
    keys = [k for k in dict.fromkeys([*flat_e, *flat_s]) if flat_s.get(k) != flat_e.get(k)]
    if not keys:
        return []
    shown = ", ".join(f"{k} {_show(flat_s.get(k))} (wanted {_show(flat_e.get(k))})" for k in keys[:4])
    return [f"{name} differs: {shown}" + (f" and {len(keys) - 4} more" if len(keys) > 4 else "")]


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, name + "."))
        else:
            out[name] = list(value) if isinstance(value, tuple) else value
    return out


def _show(value: Any) -> str:
    return "unset" if value is None else json.dumps(value, default=str)


def differences(stored: Provenance | None, expected: Provenance, parts: Sequence[str] = PARTS) -> list[str]:
    """What differs between a recorded provenance and the one expected now, in words (empty: they match).

    Only the ``parts`` that ``expected`` sets are compared; a part the record lacks is a difference.
    """
    if stored is None:
        return ["it carries no provenance record"]
    out: list[str] = []
    for part in parts:
        want = getattr(expected, part)
        if want is None:
            continue
        have = getattr(stored, part)
        if part == "model":
            out += _model_differences(have, want)
        elif part == "input":
            if have != want:
                out.append("its input changed since it was made" if have else "no input fingerprint is recorded")
        else:
            out += _mapping_differences(part, have, want)
    return out


def require_match(stored: Provenance | None, expected: Provenance, where: str | Path | None, *,
                  parts: Sequence[str] = PARTS, trust: bool = False, redo: str = "") -> list[str]:
    """Refuse vectors whose provenance differs from what the consumer expects (one :class:`InputError` naming the
    differences and ``redo``, how to make matching ones).

    A file without a record is refused too, unless ``trust``: then a warning is given and the returned notes (to
    record in the output's ``trusted``) say so.
    """
    if stored is None:
        if trust:
            warn(f"{where}: used without a provenance record ({TRUST_HINT})")
            # the note goes into outputs: it names the file by its content fingerprint, never by its name
            known = where is not None and Path(where).exists()
            return [f"vectors without a provenance record used ({TRUST_HINT})"
                    + (f": input {input_print(where)}" if known else "")]
        raise InputError(where, "carries no provenance record (made by an older medvl or another tool), so it cannot "
                                f"be checked against this model; {redo or 'make it again with this medvl'}, or pass "
                                f"{TRUST_HINT} to use it as it is (recorded in the output)")
    diffs = differences(stored, expected, parts)
    if diffs:
        raise InputError(where, "does not match: " + "; ".join(diffs) + (f" ({redo})" if redo else ""))
    return list(stored.trusted)


# ------------------------------------------------------------------------------------------------ fingerprints
_WEIGHTS_MEMO: dict[tuple[str, int, int], str] = {}
_INPUT_MEMO: dict[tuple[str, int, int], str] = {}


def _stat_key(path: Path) -> tuple[str, int, int]:
    st = path.stat()
    return str(path.resolve()), st.st_size, st.st_mtime_ns


def weights_hash(path: str | Path) -> str:
    """Content hash of a weights file's bytes (memoised per process by path, size and modification time)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "weights file not found")
    key = _stat_key(path)
    if key not in _WEIGHTS_MEMO:
        _WEIGHTS_MEMO[key] = content_hash(path)
    return _WEIGHTS_MEMO[key]


def _sampled(path: Path) -> str:
    size = path.stat().st_size
    h = hashlib.blake2b(digest_size=20)
    h.update(str(size).encode())
    with open(path, "rb") as fh:
        for offset in (0, size // 2 - _SAMPLE // 2, size - _SAMPLE):
            fh.seek(max(0, offset))
            h.update(fh.read(_SAMPLE))
    return "sampled:" + h.hexdigest()


def input_print(path: str | Path) -> str:
    """The fingerprint of an input file or folder: its content hash, or for a file over 256 MiB (a whole-slide
    image) a hash of its size and its first, middle and last 4 MiB (memoised per process)."""
    path = Path(path)
    if path.is_dir():
        return config_hash([[str(p.relative_to(path)), input_print(p)] for p in sorted(path.rglob("*"))
                            if p.is_file()])
    key = _stat_key(path)
    if key not in _INPUT_MEMO:
        _INPUT_MEMO[key] = _sampled(path) if key[1] > SAMPLED_ABOVE else content_hash(path)
    return _INPUT_MEMO[key]
