"""The steps: one module per pipeline step, each a row of the pipeline table (tasks/pipeline.py)."""
