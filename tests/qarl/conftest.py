"""Fixtures shared by the learner tests."""

from __future__ import annotations

import pytest

from qarl.sac import fast as fast_sac


@pytest.fixture(params=["onednn", "torch-mm"])
def matmul_backend(request, monkeypatch):
    """The fast (and grouped) SAC update with oneDNN's matmuls and with torch's own (their fallback)."""
    if request.param == "onednn":
        if fast_sac.onednn_linear() is None:
            pytest.skip("this torch build has no usable oneDNN linear op")
        monkeypatch.setenv("QARL_ONEDNN", "1")  # forced, also for the tests' small networks
    else:
        monkeypatch.setenv("QARL_ONEDNN", "0")
    return request.param
