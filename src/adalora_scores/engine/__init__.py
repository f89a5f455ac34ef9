"""The training path: data batching, the explicit training loop, and the run folder."""
