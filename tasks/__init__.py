"""Pipeline steps: plain functions with typed inputs and outputs, one step per module."""
