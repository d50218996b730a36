"""Stain normalisation as a tile transform: fitted once on a reference tile or slide, saved with the run.

Three methods, one interface (a registry, :data:`STAIN_METHODS`): ``fit(rgb, config) -> params`` on the reference
image, ``apply(params, tiles, config) -> tiles`` on uint8 batches ``[B, H, W, 3]`` (torch, on the device the batch is
on, so extraction normalises on the GPU):

- ``macenko`` (Macenko et al., ISBI 2009): the stain vectors are the extreme angles of the optical densities
  projected on their two main eigenvectors; concentrations by least squares, scaled to the reference's 99th
  percentile, recomposed with the reference's vectors. Fitted with torchstain's ``TorchMacenkoNormalizer``; medvl's
  batched transform reproduces torchstain's ``normalize`` tile by tile (tests compare them).
- ``reinhard`` (Reinhard et al., 2001): per-channel mean and standard deviation in CIE L*a*b* matched to the
  reference's. Fitted with torchstain's ``TorchReinhardNormalizer``; the batched transform is tested against it.
- ``vahadane`` (Vahadane et al., IEEE TMI 2016): sparse non-negative factorisation of the optical densities of tissue
  pixels (luminosity below ``luminosity``) into two stains (alternating multiplicative updates with an L1 penalty
  ``sparsity`` on the concentrations, started from Macenko's vectors); concentrations by the same sparse
  non-negative coding, scaled to the reference's 99th percentile.
  torchstain has no Vahadane; medvl's is tested by its properties (a re-stained tile comes back to the reference).

A fit (:class:`StainFit`) is data: method, parameters and the reference's content hash; :meth:`StainFit.save` writes
it as JSON next to the outputs and :meth:`StainFit.fingerprint` is what feature files record, so features made with
another fit (or none) are never reused. A reference without tissue is an :class:`InputError`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medvl.atomic import atomic_write_text
from medvl.config import Config, field
from medvl.errors import ConfigError, InputError, require
from medvl.hashing import bytes_hash, config_hash
from medvl.registry import Registry

__all__ = ["STAIN_METHODS", "StainConfig", "StainFit", "fit_stain", "load_reference", "stain_label"]


@dataclass
class StainConfig(Config):
    """How a stain fit is made and applied.

    Attributes:
        method: ``macenko``, ``reinhard`` or ``vahadane``.
        io: transmitted light intensity (optical density reference), as torchstain's ``Io``.
        alpha: percentile of the extreme angles (Macenko).
        beta: optical-density threshold below which a pixel is transparent (glass).
        luminosity: pixels darker than this (L* / 100) are tissue for the Vahadane factorisation.
        sparsity: the L1 weight of the Vahadane factorisation.
        min_tissue: the reference must have at least this share of tissue pixels.
        reference_mpp: tiles of a reference slide are read at this µm/px.
        reference_tiles: how many tissue tiles of a reference slide the fit uses.
    """

    method: str = "macenko"
    io: float = 240.0
    alpha: float = 1.0
    beta: float = 0.15
    luminosity: float = 0.8
    sparsity: float = 0.1
    min_tissue: float = 0.05
    reference_mpp: float = 0.5
    reference_tiles: int = 16

    def validate(self) -> None:
        STAIN_METHODS.get(self.method)
        if not 0 < self.min_tissue < 1 or self.io <= 0:
            raise ConfigError("StainConfig: min_tissue must be in (0, 1) and io > 0")


@dataclass
class StainFit(Config):
    """A fitted stain normalisation: what is saved with the run and recorded in feature files."""

    method: str
    params: dict[str, Any]
    config: StainConfig = field(default_factory=StainConfig)
    reference: str = ""

    def fingerprint(self) -> str:
        """Content hash of the fit (method, parameters, settings): feature files record it."""
        return config_hash(self.to_dict())[:16]

    def save(self, path: str | Path) -> Path:
        return atomic_write_text(path, json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> StainFit:
        return cls.from_file(path)

    def apply(self, tiles):
        """Normalise uint8 tiles ``[B, H, W, 3]`` (a torch tensor or a numpy array; same type back)."""
        import torch

        as_numpy = isinstance(tiles, np.ndarray)
        x = torch.from_numpy(tiles) if as_numpy else tiles
        out = STAIN_METHODS.get(self.method).apply(self.params, x, self.config)
        return out.cpu().numpy() if as_numpy else out


def stain_label(fit: StainFit | None) -> str:
    """What an output records about stain normalisation (``none``, or ``METHOD:FINGERPRINT``): the readable ``stain``
    attribute of feature files, and the ``stain`` entry of their provenance's tiling record."""
    return "none" if fit is None else f"{fit.method}:{fit.fingerprint()}"


# ------------------------------------------------------------------------------------------------ shared maths
def _od(x, io: float):
    import torch

    return -torch.log((x.float() + 1.0) / io)


def _tissue_pixels(od, beta: float):
    return (od >= beta).all(dim=-1)


def _check_tissue(rgb: np.ndarray, config: StainConfig, where: str) -> None:
    import torch

    tissue = _tissue_pixels(_od(torch.from_numpy(rgb.reshape(-1, 3)), config.io), config.beta)
    share = float(tissue.float().mean())
    if share < config.min_tissue or int(tissue.sum()) < 100:
        raise InputError(where, f"the stain reference has no tissue: {share:.1%} of its pixels are stained (optical "
                                f"density >= {config.beta} in every channel), at least {config.min_tissue:.0%} are "
                                "needed; choose a tile or slide region covered by tissue")


def _kth(values, counts, q: float):
    """torchstain's percentile (nearest rank, no interpolation) of the first ``counts[b]`` sorted values per row."""
    import torch

    k = (1 + torch.round(0.01 * q * (counts.double() - 1))).long().clamp(min=1) - 1
    return torch.gather(values, 1, k[:, None])[:, 0]


# ------------------------------------------------------------------------------------------------ Macenko
class Macenko:
    """Macenko's method: fit with torchstain, apply batched."""

    @staticmethod
    def fit(rgb: np.ndarray, config: StainConfig) -> dict[str, Any]:
        import torch

        torchstain = require("torchstain", "stain", "Macenko stain normalisation")
        norm = torchstain.normalizers.MacenkoNormalizer(backend="torch")
        norm.fit(torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1), Io=config.io, alpha=config.alpha,
                 beta=config.beta)
        return {"stain_matrix": norm.HERef.tolist(), "max_concentration": norm.maxCRef.tolist()}

    @staticmethod
    def apply(params: dict[str, Any], tiles, config: StainConfig):
        import torch

        b, h, w, _ = tiles.shape
        od = _od(tiles.reshape(b, -1, 3), config.io)  # float32, as torchstain computes it
        mask = _tissue_pixels(od, config.beta)
        n = mask.sum(dim=1)
        ok = n >= 3  # a tile without stained pixels has no stain vectors: it passes unchanged
        weights = mask.float() / n.clamp(min=1)[:, None]
        mean = (od * weights[..., None]).sum(1)
        centred = (od - mean[:, None]) * mask[..., None]
        cov = centred.transpose(1, 2) @ centred / (n.clamp(min=2) - 1)[:, None, None]
        cov = torch.where(ok[:, None, None], cov, torch.eye(3, dtype=cov.dtype, device=cov.device))
        eigvecs = torch.linalg.eigh(cov)[1][:, :, [1, 2]]  # [B, 3, 2]
        proj = od @ eigvecs
        phi = torch.atan2(proj[..., 1], proj[..., 0]).masked_fill(~mask, float("inf"))
        phi = phi.sort(dim=1).values
        angles = torch.stack([_kth(phi, n, config.alpha), _kth(phi, n, 100 - config.alpha)], dim=1)
        vecs = eigvecs @ torch.stack([torch.cos(angles), torch.sin(angles)], dim=1)  # [B, 3, 2]: vMin, vMax
        he = torch.where((vecs[:, 0, 0] > vecs[:, 0, 1])[:, None, None], vecs, vecs.flip(-1))
        conc = torch.linalg.lstsq(he, od.transpose(1, 2)).solution  # [B, 2, P]
        k = 1 + round(0.01 * 99 * (conc.shape[-1] - 1))  # torchstain's nearest-rank 99th percentile
        max_c = torch.kthvalue(conc.reshape(b * 2, -1), k, dim=1).values
        ref = torch.tensor(params["stain_matrix"], dtype=conc.dtype, device=conc.device)
        ref_max = torch.tensor(params["max_concentration"], dtype=conc.dtype, device=conc.device)
        conc = conc * (ref_max / max_c.reshape(b, 2))[..., None]
        out = (config.io * torch.exp(-(ref @ conc))).clamp(max=255).transpose(1, 2).reshape(b, h, w, 3)
        return torch.where(ok[:, None, None, None], out.float().to(torch.int32).to(torch.uint8), tiles)


# ------------------------------------------------------------------------------------------------ Reinhard
_RGB2XYZ = ((0.412453, 0.357580, 0.180423), (0.212671, 0.715160, 0.072169), (0.019334, 0.119193, 0.950227))
_WHITE = (0.95047, 1.0, 1.08883)


#: L*a*b* from f = (f(X/Xn), f(Y/Yn), f(Z/Zn)): lab = _F_TO_LAB @ f + (-16, 0, 0)
_F_TO_LAB = ((0.0, 116.0, 0.0), (500.0, -500.0, 0.0), (0.0, 200.0, -200.0))
#: and back: f = _LAB_TO_F @ lab + 16 / 116
_LAB_TO_F = ((1 / 116, 1 / 500, 0.0), (1 / 116, 0.0, 0.0), (1 / 116, 0.0, -1 / 200))


def _srgb_to_linear(x):
    import torch

    return torch.where(x > 0.04045, ((x + 0.055) / 1.055) ** 2.4, x / 12.92)


def reinhard_transfer(tiles, means, stds):
    """Reinhard's transfer of uint8 RGB tiles ``[B, H, W, 3]`` to the L*a*b* ``means`` / ``stds``, in one pass.

    The conversion is torchstain's (sRGB, D65, CIE L*a*b*). Per tile, "to L*a*b*, standardise, rescale, back" is an
    affine map of the cube-root coordinates f, so it runs as one batched 3x3 product. The tile's L*a*b* statistics
    come from the covariance of f, and sRGB linearisation is a 256-entry table on the uint8 input.
    """
    import torch

    b, h, w, _ = tiles.shape
    n = h * w
    opts = {"dtype": torch.float32, "device": tiles.device}
    lut = _srgb_to_linear(torch.arange(256, **opts) / 255.0)
    rgb2xyz = torch.tensor(_RGB2XYZ, **opts)
    white = torch.tensor(_WHITE, **opts)
    lin = lut[tiles.reshape(b, n, 3).transpose(1, 2).long()]  # [B, 3, N]
    xyz = torch.matmul(rgb2xyz / white[:, None], lin)
    f = torch.where(xyz > 0.008856, xyz.clamp(min=1e-12) ** (1 / 3), 7.787 * xyz + 16 / 116)
    to_lab = torch.tensor(_F_TO_LAB, **opts)
    offset = torch.tensor((-16.0, 0.0, 0.0), **opts)
    mu = f.mean(dim=2, keepdim=True)
    centred = f - mu
    cov = torch.matmul(centred, centred.transpose(1, 2)) / max(n - 1, 1)  # unbiased, as torch.std
    mean = (to_lab @ mu).squeeze(-1) + offset
    std = torch.einsum("ij,bjk,ik->bi", to_lab, cov, to_lab).clamp(min=0).sqrt().clamp(min=1e-6)
    scale = torch.tensor(stds, **opts) / std  # lab' = scale * lab + shift
    shift = torch.tensor(means, **opts) - mean * scale
    to_f = torch.tensor(_LAB_TO_F, **opts)
    a = to_f @ (scale[:, :, None] * to_lab)  # f' = a f + c
    c = (to_f @ (scale * offset + shift)[:, :, None]) + 16 / 116
    f = torch.baddbmm(c, a, f)
    xyz = torch.where(f > 0.2068966, f * f * f, (f - 16 / 116) / 7.787)
    lin = torch.matmul(torch.linalg.inv(rgb2xyz) * white[None, :], xyz)
    rgb = torch.where(lin > 0.0031308, 1.055 * lin.clamp(min=1e-12) ** (1 / 2.4) - 0.055, lin * 12.92)
    return (rgb.clamp(0, 1) * 255).to(torch.uint8).transpose(1, 2).reshape(b, h, w, 3)


class Reinhard:
    """Reinhard's colour transfer in L*a*b*: fit with torchstain, apply batched."""

    @staticmethod
    def fit(rgb: np.ndarray, config: StainConfig) -> dict[str, Any]:
        import torch

        torchstain = require("torchstain", "stain", "Reinhard stain normalisation")
        norm = torchstain.normalizers.ReinhardNormalizer(backend="torch")
        norm.fit(torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1))
        # torchstain keeps L scaled by 2.55 and a, b shifted by 128 ("OpenCV" L*a*b*) and then divides them back:
        # its statistics are those of plain L*a*b*
        return {"means": norm.target_means.tolist(), "stds": norm.target_stds.tolist()}

    @staticmethod
    def apply(params: dict[str, Any], tiles, config: StainConfig):
        return reinhard_transfer(tiles, params["means"], params["stds"])


# ------------------------------------------------------------------------------------------------ Vahadane
def _sparse_codes(od: np.ndarray, stains: np.ndarray, sparsity: float, iters: int = 100) -> np.ndarray:
    """Non-negative, L1-penalised concentrations ``[2, P]`` of ``od [P, 3]`` for fixed ``stains [2, 3]``
    (multiplicative updates, which keep every entry non-negative)."""
    conc = np.maximum(np.linalg.lstsq(stains.T, od.T, rcond=None)[0], 1e-3)
    gram, target = stains @ stains.T, stains @ od.T
    for _ in range(iters):
        conc *= target / (gram @ conc + sparsity + 1e-12)
    return conc


def _luminosity(pixels: np.ndarray) -> np.ndarray:
    """L* / 100 of RGB uint8 pixels ``[P, 3]`` (only the Y of XYZ is needed)."""
    c = pixels.astype(np.float32) / 255.0
    lin = np.where(c > 0.04045, ((c + 0.055) / 1.055) ** 2.4, c / 12.92)
    y = lin @ np.asarray(_RGB2XYZ[1], dtype=np.float32)
    f = np.where(y > 0.008856, np.cbrt(y), 7.787 * y + 16 / 116)
    return (116 * f - 16) / 100.0


def _vahadane_matrix(rgb: np.ndarray, config: StainConfig, max_pixels: int = 20000, seed: int = 0,
                     iters: int = 100) -> np.ndarray:
    """Two unit stain vectors ``[2, 3]`` (haematoxylin first) by sparse non-negative factorisation of the tissue
    pixels' optical densities, started from Macenko's vectors (alternating multiplicative updates; the L1 penalty
    drifts the vectors towards degenerate ones over many iterations, so the updates stop at ``iters``)."""
    pixels = rgb.reshape(-1, 3)
    lum = _luminosity(pixels)
    od = -np.log((pixels.astype(np.float64) + 1.0) / config.io)
    keep = (lum < config.luminosity) & (od >= config.beta).all(axis=1)
    od = od[keep]
    if len(od) < 100:
        raise InputError("stain reference", "too few tissue pixels for the Vahadane factorisation")
    if len(od) > max_pixels:
        od = od[np.random.default_rng(seed).choice(len(od), max_pixels, replace=False)]
    stains = np.abs(np.asarray(Macenko.fit(rgb, config)["stain_matrix"], dtype=np.float64).T)
    conc = _sparse_codes(od, stains, config.sparsity, 20)
    for _ in range(iters):
        stains *= (conc @ od) / (conc @ conc.T @ stains + 1e-12)
        norms = np.linalg.norm(stains, axis=1, keepdims=True).clip(1e-12)
        stains, conc = stains / norms, conc * norms
        conc *= (stains @ od.T) / (stains @ stains.T @ conc + config.sparsity + 1e-12)
    return stains if stains[0, 0] >= stains[1, 0] else stains[::-1]  # haematoxylin (more red absorbed) first


class Vahadane:
    """Vahadane's structure-preserving normalisation (sparse non-negative factorisation of optical densities)."""

    @staticmethod
    def fit(rgb: np.ndarray, config: StainConfig) -> dict[str, Any]:
        import torch

        stains = _vahadane_matrix(rgb, config)
        od = _od(torch.from_numpy(rgb.reshape(-1, 3)), config.io).double().numpy()
        conc = _sparse_codes(od, stains, config.sparsity)
        return {"stain_matrix": stains.tolist(), "max_concentration": np.percentile(conc, 99, axis=1).tolist()}

    @staticmethod
    def apply(params: dict[str, Any], tiles, config: StainConfig):
        import torch

        ref = np.asarray(params["stain_matrix"])
        ref_max = np.asarray(params["max_concentration"])
        out = []
        for tile in tiles.cpu().numpy():
            try:
                stains = _vahadane_matrix(tile, config, max_pixels=4000, iters=50)
            except InputError:  # a tile without tissue passes unchanged
                out.append(tile)
                continue
            od = _od(torch.from_numpy(tile.reshape(-1, 3)), config.io).double().numpy()
            conc = _sparse_codes(od, stains, config.sparsity, 50)
            conc *= (ref_max / np.percentile(conc, 99, axis=1).clip(1e-6))[:, None]
            rgb = (config.io * np.exp(-(ref.T @ conc))).T.clip(0, 255).reshape(tile.shape)
            out.append(rgb.astype(np.uint8))
        return torch.from_numpy(np.stack(out)).to(tiles.device)


#: method name -> object with ``fit(rgb, config) -> params`` and ``apply(params, tiles, config) -> tiles``
STAIN_METHODS: Registry[Any] = Registry("stain normalisation method")
STAIN_METHODS.add("macenko", Macenko)
STAIN_METHODS.add("reinhard", Reinhard)
STAIN_METHODS.add("vahadane", Vahadane)


# ------------------------------------------------------------------------------------------------ references
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def load_reference(path: str | Path, config: StainConfig) -> np.ndarray:
    """The reference as RGB uint8: an image file, or a mosaic of tissue tiles of a slide (``reference_tiles`` tiles
    of 256 px at ``reference_mpp``, the ones with most tissue)."""
    from PIL import Image

    path = Path(path)
    if not path.exists():
        raise InputError(path, "stain reference not found")
    if path.suffix.lower() in _IMAGE_SUFFIXES:
        return np.asarray(Image.open(path).convert("RGB"))
    from medvl.io.slide import open_slide
    from medvl.pathology.loader import iter_tile_batches
    from medvl.pathology.tiling import TileConfig, make_tile_grid
    from medvl.pathology.tissue import detect_tissue

    with open_slide(path) as slide:
        mask, _ = detect_tissue(slide)
        grid = make_tile_grid(slide, TileConfig(mpp=config.reference_mpp, size=256, min_tissue=0.5), mask)
        if len(grid) == 0:
            raise InputError(path, "the stain reference has no tissue: no 256 px tile at "
                                   f"{config.reference_mpp:g} µm/px is half covered by tissue")
        best = np.argsort(-grid.tissue_fraction, kind="stable")[:config.reference_tiles]
        grid.coords, grid.tissue_fraction = grid.coords[np.sort(best)], grid.tissue_fraction[np.sort(best)]
        tiles = np.concatenate([t for _, t in iter_tile_batches(slide, grid, batch_size=16, workers=0)])
    return np.concatenate(list(tiles), axis=1)  # one row of tiles


def fit_stain(reference: str | Path | np.ndarray, config: StainConfig | None = None) -> StainFit:
    """Fit ``config.method`` on a reference (an image file, a slide, or an RGB uint8 array)."""
    config = config or StainConfig()
    where = "stain reference" if isinstance(reference, np.ndarray) else str(reference)
    rgb = reference if isinstance(reference, np.ndarray) else load_reference(reference, config)
    rgb = np.array(rgb[..., :3], dtype=np.uint8)  # a writable copy (PIL and slide arrays may be read-only)
    _check_tissue(rgb, config, where)
    params = STAIN_METHODS.get(config.method).fit(rgb, config)
    return StainFit(method=config.method, params=params, config=config, reference=bytes_hash(rgb.tobytes()))
