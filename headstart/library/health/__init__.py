"""Data health: suspected label errors and drift, from backbone features (near duplicates are the data layer's)."""
