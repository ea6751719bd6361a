"""Diagnostics of off-policy evaluation with function approximation (exact on finite MDPs, and sample-based).

See :mod:`qarl.diagnostics.finite` for the definitions and :mod:`qarl.diagnostics.testbed` for the testbed;
:mod:`qarl.diagnostics.neural` for the estimators logged for the SAC critics of every trial and
:mod:`qarl.bench.diagnostics` for their overhead benchmark.
"""
