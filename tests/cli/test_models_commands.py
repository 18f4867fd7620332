"""`headstart predict` and `headstart export`: both read a registered model; what they refuse before loading one."""

from __future__ import annotations

from pathlib import Path

from tests.cli.conftest import at, invoke


def test_predict_without_a_champion_is_refused(registry, tmp_path: Path) -> None:
    opened, _ = registry
    (tmp_path / "image.png").write_bytes(b"")
    code, output = invoke("predict", str(tmp_path / "image.png"), *at(opened))
    assert code == 2 and "there is no champion yet" in output


def test_export_refuses_another_format_before_reading_the_registry(tmp_path: Path) -> None:
    code, output = invoke("export", "champion", str(tmp_path / "m.tflite"), "--format", "tflite")
    assert code == 2 and "only onnx" in output and not (tmp_path / "m.tflite").exists()
