"""The local model store and offline bundles.

The store is a folder (``MEDVL_MODELS``, else ``<workspace>/models/published``) with one folder per installed card::

    <store>/uni/
        card.json          the card the bundle was packed with
        weights/...        the weight file(s), as published
        LICENSE.txt        the licence text (or the card's licence statement)
        SHA256SUMS         sha256sum-compatible checksums of every file above
        bundle.json        format, card name, medvl version, file sizes and checksums

A bundle (``medvl models pack``) is one uncompressed tar holding exactly those files, so weights carried into a
network without internet install with ``medvl models unpack`` (checksums verified, installed atomically: a failed
or interrupted unpack leaves nothing under the model's name). ``sha256sum -c SHA256SUMS`` also verifies a store
folder without medvl.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from medvl import __version__
from medvl.errors import ConfigError, InputError
from medvl.hashing import sha256_file
from medvl.models.card import ModelCard

__all__ = [
    "BUNDLE_FORMAT", "ENV_VAR", "ModelStore", "pack_bundle", "quick_fingerprint", "unpack_bundle",
]

ENV_VAR = "MEDVL_MODELS"
BUNDLE_FORMAT = "medvl-model-bundle"
MANIFEST = "bundle.json"
SUMS = "SHA256SUMS"
LICENCE = "LICENSE.txt"
_LICENCE_NAMES = ("LICENSE", "LICENSE.txt", "LICENSE.md", "LICENCE", "LICENCE.txt", "LICENSE.pdf")
_CHUNK = 1 << 22


def quick_fingerprint(path: str | Path, span: int = 1 << 20) -> str:
    """A cheap content fingerprint of a large file: SHA-256 over its size and its first and last ``span`` bytes."""
    path = Path(path)
    size = path.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    with open(path, "rb") as fh:
        digest.update(fh.read(span))
        if size > span:
            fh.seek(max(span, size - span))
            digest.update(fh.read(span))
    return digest.hexdigest()[:16]


class ModelStore:
    """Installed published models, one folder per card name.

    Args:
        root: the store folder; default ``MEDVL_MODELS``, else ``<workspace>/models/published``.
        workspace: the workspace whose store is used when ``root`` and ``MEDVL_MODELS`` are unset.
    """

    def __init__(self, root: str | Path | None = None, workspace: str | Path | None = None):
        if root is None and os.environ.get(ENV_VAR):
            root = os.environ[ENV_VAR]
        if root is None:
            from medvl.workspace import Workspace

            root = Workspace.resolve(workspace).models / "published"
        self.root = Path(root).expanduser().resolve()

    def path(self, name: str) -> Path:
        return self.root / name

    def installed(self, name: str) -> bool:
        return (self.root / name / MANIFEST).is_file()

    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if (p / MANIFEST).is_file())

    def manifest(self, name: str) -> dict[str, Any]:
        if not self.installed(name):
            raise InputError(self.root, f"model '{name}' is not installed in this store (unpack its bundle with "
                                        "'medvl models unpack BUNDLE', or pass the weights path)")
        return json.loads((self.root / name / MANIFEST).read_text(encoding="utf-8"))

    def weights_path(self, name: str) -> Path:
        self.manifest(name)
        return self.root / name / "weights"

    def card(self, name: str) -> ModelCard:
        self.manifest(name)
        return ModelCard.from_file(self.root / name / "card.json")

    def verify(self, name: str) -> list[str]:
        """Re-hash the installed files; returns the files whose checksum no longer matches (empty: all good)."""
        files = self.manifest(name)["files"]
        folder = self.root / name
        return [rel for rel, meta in files.items()
                if not (folder / rel).is_file() or sha256_file(folder / rel) != meta["sha256"]]


# ------------------------------------------------------------------------------------------------ pack
def _licence_text(card: ModelCard, folder: Path | None, licence: Path | None) -> tuple[bytes, str]:
    """The licence to ship: an explicit file, a licence file beside the weights, else the card's statement."""
    candidates = [licence] if licence is not None else [folder / n for n in _LICENCE_NAMES] if folder else []
    for path in candidates:
        if path is not None and path.is_file():
            return path.read_bytes(), path.name
    if licence is not None:
        raise InputError(licence, "licence file not found")
    lic = card.licence
    lines = [f"{card.title} ({card.name})", "", f"Weights licence: {lic.weights}"]
    lines += [f"Code licence: {lic.code}"] if lic.code else []
    lines += ["Access is gated: the weights were obtained under the provider's terms of use."] if lic.gated else []
    lines += [f"Licence text and terms: {lic.url}"] if lic.url else []
    lines += [f"Note: {lic.conflict}"] if lic.conflict else []
    lines += ["", "The full licence text was not beside the weights when this bundle was packed; the statement above",
              "is taken from the medvl model card. Read the licence at its source before use.", "",
              f"Citation: {card.citation}"]
    return ("\n".join(lines) + "\n").encode("utf-8"), "card"


def _bundle_files(card: ModelCard, weights: Path) -> dict[str, Path]:
    """Archive names -> source files: the weight file and the published folder files the card lists."""
    files = {f"weights/{weights.name}": weights}
    for pattern in card.weights.layout:
        for extra in sorted(weights.parent.glob(pattern)):
            if extra.is_file() and extra != weights:
                files[f"weights/{extra.name}"] = extra
    return files


def pack_bundle(card: ModelCard, path: str | Path, out: str | Path, licence: str | Path | None = None,
                trust_pickle: bool = False) -> dict[str, Any]:
    """Check ``path`` against ``card`` and write one bundle archive at ``out`` (atomically)."""
    from medvl.atomic import atomic_path
    from medvl.models.card_weights import check_weights, find_weight_file

    path, out = Path(path), Path(out)
    warnings = []
    if card.checkable:
        report = check_weights(card, path, trust_pickle=trust_pickle)
        if not report.ok:
            raise InputError(report.file, f"weights do not match card '{card.name}': {report.problem()}")
    else:
        warnings.append(f"card '{card.name}' has no medvl architecture: its weights were checksummed but not checked "
                        "key by key")
    weights = find_weight_file(card, path)
    files = _bundle_files(card, weights)
    folder = weights.parent
    text, licence_from = _licence_text(card, folder, Path(licence) if licence else None)
    card_bytes = (json.dumps(card.to_dict(), indent=2) + "\n").encode("utf-8")
    sums = {rel: {"sha256": sha256_file(src), "size": src.stat().st_size} for rel, src in files.items()}
    for rel, data in (("card.json", card_bytes), (LICENCE, text)):
        sums[rel] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    manifest = {"format": BUNDLE_FORMAT, "version": 1, "card": card.name, "medvl_version": __version__,
                "licence_from": licence_from, "files": sums}
    sums_text = "".join(f"{m['sha256']}  {rel}\n" for rel, m in sorted(sums.items())).encode()
    with atomic_path(out) as tmp, tarfile.open(tmp, "w") as tar:
        _add_bytes(tar, MANIFEST, (json.dumps(manifest, indent=2) + "\n").encode())
        _add_bytes(tar, SUMS, sums_text)
        _add_bytes(tar, "card.json", card_bytes)
        _add_bytes(tar, LICENCE, text)
        for rel, src in files.items():
            tar.add(str(src), arcname=rel, recursive=False)
    return {"bundle": str(out), "card": card.name, "files": sorted(sums), "bytes": out.stat().st_size,
            "licence_from": licence_from, "checked": card.checkable, "warnings": warnings}


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    import io

    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), 0o644
    tar.addfile(info, io.BytesIO(data))


# ------------------------------------------------------------------------------------------------ unpack
def _read_manifest(tar: tarfile.TarFile, bundle: Path) -> dict[str, Any]:
    try:
        member = tar.getmember(MANIFEST)
        manifest = json.loads(tar.extractfile(member).read())
    except (KeyError, AttributeError, ValueError):
        raise InputError(bundle, f"not a medvl model bundle (no readable {MANIFEST})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != BUNDLE_FORMAT:
        raise InputError(bundle, f"not a medvl model bundle ({MANIFEST} has no format '{BUNDLE_FORMAT}')")
    if not isinstance(manifest.get("files"), dict) or not isinstance(manifest.get("card"), str):
        raise InputError(bundle, f"malformed {MANIFEST} (needs 'card' and 'files')")
    return manifest


def _safe_name(rel: str, bundle: Path) -> str:
    parts = Path(rel).parts
    if Path(rel).is_absolute() or ".." in parts or not parts:
        raise InputError(bundle, f"refused: the bundle member '{rel}' points outside its folder")
    return rel


def _extract_verified(tar: tarfile.TarFile, manifest: dict[str, Any], bundle: Path, dest: Path) -> None:
    names = {m.name: m for m in tar.getmembers()}
    for rel, meta in manifest["files"].items():
        member = names.get(_safe_name(rel, bundle))
        if member is None or not member.isfile():
            raise InputError(bundle, f"the bundle lacks '{rel}' listed in its manifest (incomplete bundle)")
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        digest, size = hashlib.sha256(), 0
        with tar.extractfile(member) as src, open(target, "wb") as fh:
            while chunk := src.read(_CHUNK):
                digest.update(chunk)
                size += len(chunk)
                fh.write(chunk)
        if size != meta.get("size") or digest.hexdigest() != meta.get("sha256"):
            raise InputError(bundle, f"checksum of '{rel}' does not match the manifest (bundle corrupt or altered): "
                                     f"sha256 {digest.hexdigest()[:12]}..., expected {str(meta.get('sha256'))[:12]}...")
    for rel in (MANIFEST, SUMS):
        with tar.extractfile(names[rel]) as src:
            (dest / rel).write_bytes(src.read())


def _install(staging: Path, target: Path) -> None:
    """Move a verified staging folder onto ``target``: the old install (if any) stays until the new one is in place."""
    for path in staging.rglob("*"):
        if path.is_file():
            with open(path, "rb") as fh:
                os.fsync(fh.fileno())
    old = target.with_name(f".{target.name}.old.tmp-medvl")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        os.replace(target, old)
    os.replace(staging, target)
    shutil.rmtree(old, ignore_errors=True)


def unpack_bundle(bundle: str | Path, store: ModelStore, force: bool = False) -> dict[str, Any]:
    """Verify a bundle's checksums and install it into ``store`` atomically."""
    bundle = Path(bundle)
    if not bundle.is_file():
        raise InputError(bundle, "bundle not found")
    try:
        tar = tarfile.open(bundle, "r")
    except (tarfile.TarError, OSError) as exc:
        raise InputError(bundle, f"not a medvl model bundle (not a tar archive: {exc})") from None
    with tar:
        manifest = _read_manifest(tar, bundle)
        name = manifest["card"]
        if store.installed(name) and not force:
            raise ConfigError(f"model '{name}' is already installed in {store.root}; pass --force to replace it")
        store.root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".tmp-medvl", dir=store.root))
        try:
            _extract_verified(tar, manifest, bundle, staging)
            card = ModelCard.from_file(staging / "card.json")
            if card.name != name:
                raise InputError(bundle, f"the bundle's card is '{card.name}', its manifest says '{name}'")
            _install(staging, store.path(name))
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return {"card": name, "installed": str(store.path(name)), "files": sorted(manifest["files"]),
            "verified": True}
