"""The two-player training loop: the trainer base class every method extends, one rollout function, seed streams,
checkpoints."""
