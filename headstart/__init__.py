"""Headstart: keeps image classifiers fresh by transfer learning."""

__version__ = "0.1.0"
