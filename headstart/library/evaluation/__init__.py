"""headstart/library/evaluation."""
