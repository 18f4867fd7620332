"""Object storage (local directory or S3) and the event ledger kept on it."""
