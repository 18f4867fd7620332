"""Data: images, manifests, validation, the split, transforms and loaders, imports and DVC versioning, workspaces."""
