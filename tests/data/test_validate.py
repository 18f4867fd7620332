"""The validator names every bad input (file, class or image) or normalises it, never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from headstart.ground.params import ValidateParams
from headstart.library.data.images import load_rgb_array
from headstart.library.data.manifest import build_manifest
from headstart.library.data.validation import validate_manifest
from tests.support.corpus import build_corpus, png_bytes


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    base = tmp_path_factory.mktemp("corpus")
    root = base / "dataset"
    return root, build_corpus(root, base / "outside.png")


@pytest.fixture(scope="module")
def report(corpus):
    root, _ = corpus
    manifest = build_manifest(root, workers=2)
    return manifest, validate_manifest(manifest, ValidateParams())


def test_each_bad_file_is_named_with_its_reason(corpus, report) -> None:
    _, expected = corpus
    _, result = report
    reasons = {f.subject: f.reason for f in result.failures if f.check == "readable image"}
    for path, fragment in expected.items():
        if fragment is None or path.startswith("."):
            continue
        assert path in reasons, f"{path} was not reported"
        assert fragment in reasons[path], f"{path}: {reasons[path]!r} lacks {fragment!r}"
    assert not result.success


def test_normalised_inputs_are_accepted_and_decode_to_rgb(corpus, report) -> None:
    root, expected = corpus
    manifest, _ = report
    rows = manifest.table.set_index("path")
    accepted = [p for p, reason in expected.items() if reason is None and not Path(p).name.startswith(".")]
    for path in accepted:
        assert bool(rows.loc[path, "decodable"]), path
        assert pd.isna(rows.loc[path, "error"]), path
        array = load_rgb_array(root / path)
        assert array.dtype == np.uint8 and array.ndim == 3 and array.shape[2] == 3, path
    assert rows.loc["coat/cmyk.jpg", "mode"] == "CMYK"
    assert rows.loc["shirt/sixteen-bit.png", "mode"].startswith("I")
    assert rows.loc["shirt/palette-transparent.png", "mode"] == "P"
    # 16-bit grey keeps its full range when scaled to 8 bits (not clipped to white)
    deep = load_rgb_array(root / "shirt/sixteen-bit.png")[..., 0]
    assert deep.min() == 0 and deep.max() == 255 and len(np.unique(deep)) > 200
    # EXIF orientation 6 turns the 32x16 landscape into a 16x32 portrait
    assert (rows.loc["coat/rotated.jpg", "width"], rows.loc["coat/rotated.jpg", "height"]) == (16, 32)
    assert load_rgb_array(root / "coat/rotated.jpg").shape[:2] == (32, 16)
    assert rows.loc["coat/sub/dir/nested.png", "label"] == "coat"


def test_class_and_image_level_failures(report) -> None:
    _, result = report
    by_check: dict[str, list] = {}
    for failure in result.failures:
        by_check.setdefault(failure.check, []).append(failure)
    per_class = {f.subject: f.reason for f in by_check["images per class"]}
    assert set(per_class) == {"empty_class", "lonely"}
    assert per_class["empty_class"].startswith("0 valid") and per_class["lonely"].startswith("1 valid")
    [duplicate] = by_check["one label per image"]
    assert "coat/dup-copy.png" in duplicate.subject and "shirt/dup.png" in duplicate.subject
    assert set(result.ignored) == {".DS_Store", "shirt/.hidden.png"}


def test_huge_header_is_rejected_without_decoding(corpus) -> None:
    root, _ = corpus
    manifest = build_manifest(root / "shirt", workers=1)
    row = manifest.table.set_index("path").loc["huge-header.png"]
    assert not row["decodable"] and pd.isna(row["width"])  # never decoded


def test_imbalance_and_expected_classes(tmp_path: Path) -> None:
    for i in range(6):
        (tmp_path / "big").mkdir(exist_ok=True)
        (tmp_path / "big" / f"{i}.png").write_bytes(png_bytes(100 + i))
    for i in range(2):
        (tmp_path / "small").mkdir(exist_ok=True)
        (tmp_path / "small" / f"{i}.png").write_bytes(png_bytes(200 + i))
    params = ValidateParams(max_imbalance_ratio=2.0, expected_classes=["big", "small", "missing"])
    result = validate_manifest(build_manifest(tmp_path), params)
    checks = {f.check: f.reason for f in result.failures}
    assert "largest/smallest class = 3.0" in checks["class balance"]
    assert "missing" in checks["expected classes"]
    assert validate_manifest(build_manifest(tmp_path), ValidateParams()).success


def headstart(*args: str) -> subprocess.CompletedProcess:
    """The real console script in its own process: what a user sees, tracebacks included."""
    return subprocess.run(["headstart", *args], capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"})


def test_cli_exit_status_table_and_json(corpus, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no params.yaml here: the defaults apply
    root, expected = corpus
    failed = headstart("validate", str(root), "--out", "bad")
    assert failed.returncode == 1, failed.stderr
    assert "Traceback" not in failed.stdout + failed.stderr
    for name in ("empty.png", "notes.jpg", "stray.png", "lonely", "empty_class", "link-outside.png"):
        assert name in failed.stdout
    saved = json.loads((tmp_path / "bad" / "validation.json").read_text())
    assert saved["success"] is False and len(saved["failures"]) >= len([v for v in expected.values() if v])

    clean = tmp_path / "clean"
    for cls in ("a", "b"):
        (clean / cls).mkdir(parents=True)
        for i in range(2):  # distinct images: hash() of a str differs per process, and two of them did collide
            (clean / cls / f"{i}.png").write_bytes(png_bytes(100 * ord(cls[0]) + i))
    ok = headstart("validate", str(clean), "--json", "--out", "ok")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert json.loads(ok.stdout)["success"] is True


def test_fifos_sockets_and_oversized_files_are_named_without_being_read(tmp_path: Path) -> None:
    """A FIFO in a dataset used to hang validation forever (and, under Prefect, hold the model's retrain slot)."""
    import socket

    root = tmp_path / "dataset"
    for cls in ("cats", "dogs"):
        (root / cls).mkdir(parents=True)
        for i in range(3):
            (root / cls / f"{i}.png").write_bytes(png_bytes(i + len(cls)))
    os.mkfifo(root / "cats" / "pipe.png")
    (root / "dogs" / "link-to-pipe.png").symlink_to(root / "cats" / "pipe.png")  # inside the dataset, still a FIFO
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(root / "dogs" / "sock.png"))
    (root / "dogs" / "huge.png").write_bytes(png_bytes(7) + b"\0" * 5000)
    try:
        done = subprocess.run(  # no params.yaml here: the defaults, with --set
            ["headstart", "validate", str(root), "--set", "validate.max_file_bytes=4096", "--json"],
            capture_output=True,
            text=True,
            timeout=120,  # the old validator never returned
            cwd=tmp_path,
        )
    finally:
        listener.close()
    assert done.returncode == 1, done.stdout + done.stderr
    reasons = {f["subject"]: f["reason"] for f in json.loads(done.stdout)["failures"] if f["check"] == "readable image"}
    for path in ("cats/pipe.png", "dogs/link-to-pipe.png", "dogs/sock.png"):
        assert "not a regular file" in reasons[path], reasons
    assert "over validate.max_file_bytes=4096" in reasons["dogs/huge.png"], reasons
    assert not any(name.endswith(f"/{i}.png") for name in reasons for i in range(3))  # the good ones pass


def test_fuzzed_images_are_named_or_accepted_never_a_crash_or_a_hang(tmp_path: Path) -> None:
    """A few hundred files with real PNG/JPEG/GIF/WebP headers: whole images must pass; random bodies behind a
    valid header, truncations and header-only files must each be named; validation must finish."""
    import io
    import random

    from PIL import Image

    rng = random.Random(1234)
    root = tmp_path / "fuzz"
    formats = {"PNG": ("png", ["RGB", "L", "P", "RGBA"]), "JPEG": ("jpg", ["RGB", "L"]), "GIF": ("gif", ["P"]),
               "WEBP": ("webp", ["RGB", "RGBA"])}  # fmt: skip
    good, bad = [], []
    for i in range(240):
        fmt = rng.choice(list(formats))
        ext, modes = formats[fmt]
        size = (rng.randint(8, 64), rng.randint(8, 64))
        pixels = bytes(rng.getrandbits(8) for _ in range(size[0] * size[1] * 4))
        image = Image.frombytes("RGBA", size, pixels).convert(rng.choice(modes))
        buffer = io.BytesIO()
        image.save(buffer, fmt)
        whole = buffer.getvalue()
        kind = rng.choice(["good", "random-body", "truncated", "header-only"])
        data = {
            "good": whole,
            "random-body": whole[:16] + bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 4096))),
            "truncated": whole[: rng.randint(17, max(18, len(whole) * 6 // 10))],
            "header-only": whole[:16],
        }[kind]
        path = f"c{i % 3}/{kind}-{i}.{ext}"
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(data)
        (good if kind == "good" else bad).append(path)

    done = subprocess.run(
        ["headstart", "validate", str(root), "--json", "--out", str(tmp_path / "report")],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
    named = {f["subject"]: f["reason"] for f in json.loads(done.stdout)["failures"] if f["check"] == "readable image"}
    assert sorted(named) == sorted(bad), {p: named.get(p) for p in set(named) ^ set(bad)}
    assert len(good) > 40 and len(bad) > 120


def test_worker_processes_build_the_same_manifest_as_one_process(corpus, report) -> None:
    """Large datasets are inspected in worker processes: every hostile file gets the same row and thumbnail."""
    root, _ = corpus
    alone, _ = report
    shared = build_manifest(root, workers=2, parallel_from=0)
    pd.testing.assert_frame_equal(shared.table, alone.table)
    assert shared.thumbnails.keys() == alone.thumbnails.keys()
    assert all(np.array_equal(shared.thumbnails[p], alone.thumbnails[p]) for p in alone.thumbnails)
    assert shared.table["error"].notna().sum() > 5  # the corpus's bad files went through the workers too


def test_a_killed_validation_leaves_no_worker_process_behind(tmp_path: Path) -> None:
    """SIGKILL (or an out-of-memory kill) gives the parent no chance to shut its pool down; the workers and the
    forkserver must still go, not wait on the pool's pipes for ever."""
    import signal
    import sys
    import time

    import psutil
    from PIL import Image

    image = tmp_path / "one.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (400, 400, 3), np.uint8)).save(image)
    for label in ("a", "b"):
        (tmp_path / "data" / label).mkdir(parents=True)
        for n in range(3000):
            os.link(image, tmp_path / "data" / label / f"{n}.png")
    code = (
        "import sys; from pathlib import Path; from headstart.library.data.manifest import build_manifest; "
        "build_manifest(Path(sys.argv[1]), workers=2, parallel_from=0)"
    )
    parent = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "data")])
    try:
        helpers: list[psutil.Process] = []
        for _ in range(200):  # the forkserver and two workers started
            helpers = psutil.Process(parent.pid).children(recursive=True)
            if len(helpers) >= 3 or parent.poll() is not None:
                break
            time.sleep(0.1)
        assert parent.poll() is None and len(helpers) >= 3, "the build ended before its workers could be seen"
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        _, alive = psutil.wait_procs(helpers, timeout=15)
        assert alive == [], f"left behind: {[(p.pid, p.cmdline()) for p in alive]}"
    finally:
        parent.kill()
