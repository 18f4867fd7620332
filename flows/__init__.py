"""Prefect: the retrain flow (wires the pipeline table), the data watcher, and what starts Prefect."""
