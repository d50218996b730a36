"""The data domain a model was trained on, and the check that inputs come from it.

A checkpoint records, per tower, the domain of its training data (``ultrasound, grayscale``; ``ct``;
``slide, H&E``). Applying it to inputs of another domain (the BreastMNIST demo model on H&E tiles) still runs, but
with a warning, shown once, on stderr and in the ``warnings`` of ``--json`` output; ``strict`` (``--strict-domain``)
makes it an error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from medvl.config import Config
from medvl.errors import ConfigError

__all__ = ["DOMAIN_HINT", "DataDomain", "domain_mismatch", "input_domain"]

#: how a user turns the domain warning into an error (one name everywhere)
DOMAIN_HINT = "--strict-domain makes this an error"


@dataclass
class DataDomain(Config):
    """Where images come from.

    Attributes:
        modality: the kind of data: ``slide`` (whole-slide tiles), ``ultrasound``, ``ct``, ``photo``, ...
        channels: ``rgb`` or ``grayscale`` pixels.
        stain: the stain of slides (``H&E``) where known.
    """

    modality: str
    channels: Literal["rgb", "grayscale"] | None = None
    stain: str | None = None

    def validate(self) -> None:
        if not self.modality.strip():
            raise ConfigError("DataDomain.modality: name the kind of data (slide, ultrasound, ct, ...)")

    def label(self) -> str:
        """``ultrasound, grayscale``; ``slide, H&E``."""
        return ", ".join(p for p in (self.modality, self.stain, self.channels) if p)


#: the domains of the inputs medvl's readers produce
INPUT_DOMAINS = {
    "slide": DataDomain("slide", "rgb"),
    "ct": DataDomain("ct", "grayscale"),
    "ultrasound": DataDomain("ultrasound", "grayscale"),
}


def input_domain(kind: str) -> DataDomain:
    """The domain of an input kind medvl reads (``slide``, ``ct``)."""
    try:
        return INPUT_DOMAINS[kind]
    except KeyError:
        raise ConfigError(f"unknown input kind '{kind}'; known: {', '.join(INPUT_DOMAINS)}") from None


def domain_mismatch(trained: DataDomain | None, given: DataDomain, model: str, strict: bool = False) -> str | None:
    """The warning for using a model trained on ``trained`` data on ``given`` inputs (``None`` when they agree or
    the training domain is unknown); with ``strict`` a mismatch raises :class:`ConfigError` instead."""
    if trained is None:
        return None
    differs = trained.modality != given.modality or (
        trained.stain is not None and given.stain is not None and trained.stain != given.stain)
    if not differs:
        return None
    message = (f"model {model} was trained on {trained.label()} images, but these inputs are {given.label()}: "
               f"its outputs may mean little")
    if strict:
        raise ConfigError(f"{message} (refused: --strict-domain)")
    return f"{message} ({DOMAIN_HINT})"
