"""Ground floor: the params model, errors, the run folder, paths, progress and the process environment.

Imports nothing of the project.
"""
