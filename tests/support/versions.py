"""The files of a small registry version, for the registry tests."""

FILES = {"model.safetensors": b"weights-bytes", "config.json": b'{"classes": ["a"]}', "decision.json": b"{}"}
