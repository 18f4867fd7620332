"""The model registry: immutable versions closed by a manifest, the champion alias, registering a run."""
