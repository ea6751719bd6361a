"""Every benchmark starts with the shared provenance header (qarl.provenance.header)."""

from __future__ import annotations

from qarl import provenance
from qarl.bench import sweep as bench_sweep_module


def test_bench_sweep_writes_the_header_above_its_tables(tmp_path, monkeypatch, capsys) -> None:
    """The sweeps themselves replaced by fixed measurements: the Markdown report starts with the header."""
    trial = {"steps": 400, "start": 10.0, "end": 20.0, "overhead": 4.0, "overhead_after_tune_start": 3.0}

    def measure(summary):
        n = summary["n"]
        trials = {f"t{i}": dict(trial) for i in range(n)}
        return {"trials": trials, "steps": 400 * n, "span": 10.0, "steps_per_s": 40.0 * n}

    monkeypatch.setattr(bench_sweep_module, "run_sweep", lambda sweep, trials, out: {"failed": [], "n": len(trials)})
    monkeypatch.setattr(bench_sweep_module, "_measure", measure)
    out = tmp_path / "sweep.md"
    res = bench_sweep_module.bench_sweep(out=out)
    assert res["ratio"] == 2.0
    text = out.read_text()
    assert text.startswith("# Sweep scaling on the embedded local Ray\n\n- command: ")
    assert provenance.cpu_model() in text and "- git: " in text and "- versions: python " in text
    assert "**Scaling, 2 vs 1 concurrent trials: 2.00x**" in text
    assert "| 2 | 800 | 10.0 | 80.0 |" in text and "Load average (1, 5, 15 min) before " in text
    printed = capsys.readouterr().out
    assert printed.startswith("# Sweep scaling on the embedded local Ray\n") and provenance.cpu_model() in printed
