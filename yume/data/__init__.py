"""Training data: the clip dataset format, trajectory labelling, the latent cache and batch sampling."""
