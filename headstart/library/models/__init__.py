"""headstart/library/models."""
