"""Robustness evaluation: metrics of a trained trial in ``eval.parquet`` (see ``runner``)."""

from qarl.evaluation.runner import POLICY_MODES, EvalConfig, Evaluator, evaluate_trainer, run_batch

__all__ = ["POLICY_MODES", "EvalConfig", "Evaluator", "evaluate_trainer", "run_batch"]
