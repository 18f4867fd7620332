"""headstart/ground."""
