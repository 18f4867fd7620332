"""headstart/library/data."""
