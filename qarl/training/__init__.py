"""The two-player training core: SAC players, the loop, checkpoints and trial runs."""
