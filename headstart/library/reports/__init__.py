"""headstart/library/reports."""
