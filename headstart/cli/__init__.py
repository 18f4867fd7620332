"""headstart/cli."""
