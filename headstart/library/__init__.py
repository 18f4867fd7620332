"""headstart/library."""
