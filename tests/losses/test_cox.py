"""The Cox partial likelihood (medvl.losses.cox): Efron against lifelines, Breslow against a plain loop."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medvl.losses.cox import cox_nll


def _breslow_loop(eta, time, event):
    total = 0.0
    for i in np.flatnonzero(event):
        total += eta[i] - np.log(np.exp(eta[time >= time[i]]).sum())
    return -total / event.sum()


def test_partial_likelihood_matches_lifelines_and_a_plain_loop():
    from lifelines import CoxPHFitter
    from lifelines.datasets import load_rossi

    d = load_rossi()  # many tied weeks
    cph = CoxPHFitter().fit(d, "week", "arrest")
    X = d.drop(columns=["week", "arrest"]).to_numpy(float)
    eta = X @ cph.params_.to_numpy()
    t, e = d["week"].to_numpy(float), d["arrest"].to_numpy().astype(bool)
    efron = cox_nll(torch.tensor(eta), torch.tensor(t), torch.tensor(e), "efron").item()
    assert efron == pytest.approx(-cph.log_likelihood_ / e.sum(), rel=1e-9)
    breslow = cox_nll(torch.tensor(eta), torch.tensor(t), torch.tensor(e), "breslow").item()
    assert breslow == pytest.approx(_breslow_loop(eta, t, e), rel=1e-9)
    assert breslow > efron  # Breslow over-counts the tied risk set
