"""medvl: disease-centric vision-language models for pathology and radiology.

``import medvl`` stays light: heavy libraries (torch, openslide, streamlit, ray) are imported by the submodules that
need them.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
