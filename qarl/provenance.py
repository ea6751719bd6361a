"""Where a measurement or a run came from: the machine, the packages, the code.

Every benchmark prints :func:`header` first (and writes it at the top of its Markdown output): the command line, the
date (UTC), the host, the CPU model and core count (the project's machines vary: Intel Xeon with AVX-512 or AMD
EPYC, and their numbers are not comparable), torch's thread count, the load average, the package versions and the
git revision. :func:`versions` and :func:`git_revision` are also what a trial's ``meta.json`` records.

A foundation module: the standard library only (torch is imported lazily, for its thread count).
"""

from __future__ import annotations

import os
import platform
import shlex
import socket
import subprocess
import sys
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = ("qarl", "torch", "stable-baselines3", "gymnasium", "mujoco", "dm-control", "numpy", "pandas", "ray")
"""The distributions whose versions are recorded by default (a trial's ``meta.json``, a benchmark's header)."""

_ROOT = Path(__file__).resolve().parents[1]  # the repository (the folder holding the ``qarl`` package)


def _cpuinfo() -> dict[str, str]:
    """The fields of ``/proc/cpuinfo``, each as the first processor gives it (empty where there is none)."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, sep, value = line.partition(":")
                if sep:
                    fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return fields


def cpu_model() -> str:
    """The CPU's model string as the system names it (``/proc/cpuinfo``'s "model name", e.g.
    "AMD EPYC 9R14 96-Core Processor"); elsewhere macOS's ``machdep.cpu.brand_string`` or :mod:`platform`'s
    processor / machine; "unknown" where nothing names it."""
    info = _cpuinfo()
    for key in ("model name", "Model", "Hardware", "cpu model"):  # x86; some ARM / other kernels
        if info.get(key):
            return info[key]
    if sys.platform == "darwin":
        try:
            brand = subprocess.run(
                ["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True, timeout=5, check=True
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            brand = ""
        if brand:
            return brand
    return platform.processor() or platform.machine() or "unknown"


def cpu_count() -> int | None:
    """Logical CPUs of the machine (:func:`os.cpu_count`)."""
    return os.cpu_count()


def versions(packages: Iterable[str] = PACKAGES) -> dict[str, str | None]:
    """``{"python": ..., <package>: <installed version or None>}`` in the order given (Python first)."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in packages:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_revision(root: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """``{"revision": <full sha of HEAD>, "dirty": <tracked files changed>}`` of the git checkout at ``root``
    (default: the one holding this package); both None where there is no git or no checkout."""
    root = Path(root) if root is not None else _ROOT
    try:
        rev = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        return {"revision": rev, "dirty": bool(dirty)}
    except (OSError, subprocess.SubprocessError):
        return {"revision": None, "dirty": None}


def load_average() -> str:
    """The 1, 5 and 15 minute load averages, "0.52, 0.61, 0.70" ("n/a" where the platform has none)."""
    try:
        return ", ".join(f"{x:.2f}" for x in os.getloadavg())
    except (OSError, AttributeError):  # pragma: no cover - platforms without getloadavg
        return "n/a"


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags from ``/proc/cpuinfo`` ("flags" on x86, "Features" on ARM); empty elsewhere."""
    info = _cpuinfo()
    return frozenset((info.get("flags") or info.get("Features") or "").split())


def machine_summary() -> str:
    """The CPU model, the logical CPU count and the widest x86 vector extension: "AMD EPYC 9R14 96-Core Processor,
    2 logical CPUs, AVX-512"."""
    flags = cpu_flags()
    vector = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else None
    parts = [cpu_model(), f"{cpu_count() or 'unknown'} logical CPUs"]
    return ", ".join(parts + ([vector] if vector else []))


def torch_threads() -> int | None:
    """torch's intra-op thread count now (None without torch)."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return None
    return torch.get_num_threads()


def _git_line(git: Mapping[str, Any]) -> str:
    if not git.get("revision"):
        return "n/a"
    return git["revision"][:7] + (" (dirty: uncommitted changes to tracked files)" if git["dirty"] else " (clean)")


def command_line(argv: Iterable[str] | None = None) -> str:
    """The command as typed: ``sys.argv`` with the program's folder left out ("qarl bench update --rounds 1")."""
    argv = list(sys.argv if argv is None else argv)
    if not argv:
        return ""
    return shlex.join([Path(argv[0]).name, *argv[1:]])


def header(title: str, extra: Mapping[str, Any] | None = None) -> str:
    """A Markdown block (no final newline), ``# title`` then one bullet per fact, that a benchmark prints first and
    writes at the top of its Markdown output. ``extra`` adds bullets (``{"device": "cuda"}``) after the standard
    ones."""
    vs = ", ".join(f"{name} {v if v is not None else 'not installed'}" for name, v in versions().items())
    facts: dict[str, Any] = {
        "command": f"`{command_line()}`",
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "host": socket.gethostname(),
        "CPU": machine_summary(),
        "OS": platform.platform(),
        "torch threads": torch_threads(),
        "load average (1, 5, 15 min)": load_average(),
        "versions": vs,
        "git": _git_line(git_revision()),
        **(extra or {}),
    }
    return "\n".join([f"# {title}", "", *(f"- {k}: {v}" for k, v in facts.items())])


__all__ = [
    "PACKAGES",
    "command_line",
    "cpu_count",
    "cpu_flags",
    "cpu_model",
    "git_revision",
    "header",
    "load_average",
    "machine_summary",
    "torch_threads",
    "versions",
]
