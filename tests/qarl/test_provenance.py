"""The provenance every benchmark prints first: machine, packages and code, read from the real system."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from qarl import provenance

ROOT = Path(__file__).resolve().parents[2]


def _git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=True).stdout.strip()


def _in_git_checkout() -> bool:
    try:
        return _git("rev-parse", "--is-inside-work-tree") == "true"
    except (OSError, subprocess.SubprocessError):
        return False


def test_cpu_model_is_the_systems_model_string() -> None:
    model = provenance.cpu_model()
    assert model and model == model.strip()
    if Path("/proc/cpuinfo").exists():
        names = [line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                 if line.startswith("model name")]  # fmt: skip
        if names:
            assert model == names[0]


def test_versions_name_installed_packages_and_none_for_missing_ones() -> None:
    got = provenance.versions(["numpy", "torch", "surely-not-an-installed-package-qarl"])
    assert list(got) == ["python", "numpy", "torch", "surely-not-an-installed-package-qarl"]
    assert got["python"] == platform.python_version()
    assert got["numpy"] == metadata.version("numpy")
    assert got["torch"] == metadata.version("torch")
    assert got["surely-not-an-installed-package-qarl"] is None


def test_versions_default_to_the_recorded_packages() -> None:
    got = provenance.versions()
    assert list(got) == ["python", *provenance.PACKAGES]
    assert got["qarl"] == metadata.version("qarl")


def test_load_average_is_three_numbers() -> None:
    load = provenance.load_average()
    if hasattr(os, "getloadavg"):
        assert len([float(x) for x in load.split(", ")]) == 3
    else:  # pragma: no cover
        assert load == "n/a"


@pytest.mark.skipif(not _in_git_checkout(), reason="not run from a git checkout")
def test_git_revision_of_the_checkout() -> None:
    git = provenance.git_revision()
    assert git["revision"] == _git("rev-parse", "HEAD")
    assert git["dirty"] == bool(_git("status", "--porcelain", "--untracked-files=no"))


def test_git_revision_outside_a_checkout(tmp_path: Path) -> None:
    assert provenance.git_revision(tmp_path) == {"revision": None, "dirty": None}


def test_machine_summary_names_cpu_and_core_count() -> None:
    summary = provenance.machine_summary()
    assert summary.startswith(provenance.cpu_model() + ", ")
    assert f"{os.cpu_count()} logical CPUs" in summary
    assert ("AVX-512" in summary) == ("avx512f" in provenance.cpu_flags())


def test_header_holds_machine_packages_and_code(monkeypatch) -> None:
    import torch

    monkeypatch.setattr(sys, "argv", ["/some/venv/bin/qarl", "bench", "update", "--rounds", "1"])
    text = provenance.header("qarl bench update", {"device": "cpu"})
    lines = text.splitlines()
    assert lines[:2] == ["# qarl bench update", ""]
    assert "- command: `qarl bench update --rounds 1`" in lines
    assert provenance.cpu_model() in text
    assert f"{os.cpu_count()} logical CPUs" in text
    assert f"- torch threads: {torch.get_num_threads()}" in lines
    assert "- load average (1, 5, 15 min): " in text
    assert f"numpy {metadata.version('numpy')}" in text and f"torch {metadata.version('torch')}" in text
    assert f"python {platform.python_version()}" in text and "UTC" in text
    assert lines[-1] == "- device: cpu"
    if _in_git_checkout():
        assert f"- git: {_git('rev-parse', 'HEAD')[:7]} (" in text


def test_header_without_git(monkeypatch) -> None:
    monkeypatch.setattr(provenance, "git_revision", lambda root=None: {"revision": None, "dirty": None})
    assert "- git: n/a" in provenance.header("t").splitlines()


def test_command_line_quotes_arguments() -> None:
    argv = ["/x/bin/qarl", "bench", "grid", "--tasks", "a b"]
    assert provenance.command_line(argv) == "qarl bench grid --tasks 'a b'"
    assert provenance.command_line([]) == ""
