"""Fixtures of the CT tests (defined in :mod:`tests.radiology.dicom_series`)."""

import torch

from tests.radiology.dicom_series import ct_labels, ct_small, dicom_j2k, dicom_series  # noqa: F401

torch.set_num_threads(1)
