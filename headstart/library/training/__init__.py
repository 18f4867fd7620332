"""headstart/library/training."""
