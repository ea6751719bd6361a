"""Settings of the whole test run."""

from __future__ import annotations

import os

# The fast SAC update times its two matmul kernels and keeps the faster (qarl.sac.fast.choose_kernel). Tests compare
# runs made in different processes bit for bit, so they pin the kernel: torch.mm unless a test asks for oneDNN
# (QARL_ONEDNN=1, e.g. the `matmul_backend` fixture); the choice by measurement is tested with injected timings.
os.environ.setdefault("QARL_ONEDNN", "0")
