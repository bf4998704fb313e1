"""Training: flow-matching foundation (stage 1), Self-Forcing with DMD (stage 2), run configs, checkpoints, parallelism."""
