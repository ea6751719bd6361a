"""qarl: Quantal Adversarial RL and robust-RL baselines in two-player zero-sum MuJoCo games."""

__version__ = "0.1.0"
