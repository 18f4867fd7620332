"""headstart/library/storage."""
