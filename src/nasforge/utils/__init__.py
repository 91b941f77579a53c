"""Small shared helpers: atomic files, checkpoints, metrics, RNG state, devices."""
