"""Training: the three scenarios, the epoch loop, the linear probe, cached features and device placement."""
