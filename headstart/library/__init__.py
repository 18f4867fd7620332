"""The library: data, models, training, evaluation, registry, storage and reports.

Pure cores and IO edges; no Prefect.
"""
