"""data.name: image_folder — class subfolders of images read with Pillow, resized, cached.

The oracle for the pixels is Pillow itself: ``numpy.asarray`` of the image converted (and
resized) by PIL, divided by 255. The cache tests make ``PIL.Image.open`` raise: a cache hit must
not open a single image."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from skier.config import DataConfig
from skier.data import load_data, load_raw
from skier.data.images import read_image_folder
from skier.errors import DataError, MissingExtraError, WriteError

ROOT = Path(__file__).resolve().parents[2]


def pattern(seed: int, shape: tuple[int, ...]) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)


def make_folder(root: Path, sizes: dict[str, int], shape: tuple[int, ...] = (6, 5)) -> Path:
    """``root/<class>/<i>.png`` with seeded random pixels: ``shape`` is (H, W) or (H, W, 3)."""
    for c, (name, count) in enumerate(sorted(sizes.items())):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            Image.fromarray(pattern(100 * c + i, shape)).save(root / name / f"{i:03d}.png")
    return root


def oracle(path: Path, mode: str, size: tuple[int, int] | None = None) -> np.ndarray:
    """What skier should give for one image, computed by Pillow: C x H x W in [0, 1]."""
    with Image.open(path) as im:
        out = im.convert(mode)
        if size is not None and out.size != (size[1], size[0]):
            out = out.resize((size[1], size[0]), Image.Resampling.BILINEAR)
        pixels = np.asarray(out, dtype=np.uint8)
    chw = pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)
    return chw.astype(np.float32) / np.float32(255.0)


def all_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.png") if not p.parent.name.startswith("."))


def test_pixels_and_classes_equal_pillows(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "set", {"dog": 3, "cat": 2, "bird": 4})
    (root / "cat" / "notes.txt").write_text("not an image")  # ignored
    (root / "README.md").write_text("ignored too")
    (root / "empty").mkdir()  # a folder without images is not a class
    (root / ".hidden").mkdir()  # nor is a hidden one
    Image.fromarray(pattern(5, (6, 5))).save(root / ".hidden" / "x.png")
    raw = read_image_folder(root)
    assert raw.class_names == ["bird", "cat", "dog"] and raw.task == "classification"
    assert raw.x_num.shape == (9, 1, 6, 5) and raw.x_num.dtype == np.float32
    assert raw.y.tolist() == [0, 0, 0, 0, 1, 1, 2, 2, 2]
    expected = np.stack([oracle(f, "L") for f in all_files(root)])
    np.testing.assert_array_equal(raw.x_num, expected)
    assert raw.info["images"] == 9 and raw.info["image_shape"] == [1, 6, 5]


def test_rgb_resize_and_channels(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "rgb", {"a": 2, "b": 2}, shape=(7, 9, 3))
    files = all_files(root)
    raw = read_image_folder(root, image_size=(4, 6))  # default channels: RGB images → 3
    assert raw.x_num.shape == (4, 3, 4, 6)
    np.testing.assert_array_equal(raw.x_num, np.stack([oracle(f, "RGB", (4, 6)) for f in files]))
    gray = read_image_folder(root, channels=1)  # no resize: all 7 x 9 already
    np.testing.assert_array_equal(gray.x_num, np.stack([oracle(f, "L") for f in files]))
    # Grayscale files asked for as RGB: three equal channels.
    groot = make_folder(tmp_path / "gray", {"a": 1, "b": 1})
    rgb = read_image_folder(groot, channels=3)
    assert rgb.x_num.shape == (2, 3, 6, 5)
    assert np.array_equal(rgb.x_num[:, 0], rgb.x_num[:, 2])


def test_mixed_modes_default_to_rgb_and_formats_are_read(tmp_path: Path) -> None:
    root = tmp_path / "mixed"
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir()
    Image.fromarray(pattern(1, (5, 5))).save(root / "a" / "x.png")
    Image.fromarray(pattern(2, (5, 5, 3))).save(root / "b" / "y.bmp")
    Image.fromarray(pattern(3, (5, 5, 3))).save(root / "b" / "z.JPG", format="JPEG")
    raw = read_image_folder(root)
    assert raw.x_num.shape == (3, 3, 5, 5) and raw.y.tolist() == [0, 1, 1]
    np.testing.assert_array_equal(raw.x_num[2], oracle(root / "b" / "z.JPG", "RGB"))


def test_different_sizes_need_image_size(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "s", {"a": 1, "b": 1})
    Image.fromarray(pattern(9, (10, 4))).save(root / "b" / "big.png")
    with pytest.raises(DataError, match=r"data\.image_size must be set.*'b/big\.png' is 10x4"):
        read_image_folder(root)
    raw = read_image_folder(root, image_size=(3, 3))
    assert raw.x_num.shape == (3, 1, 3, 3)
    np.testing.assert_array_equal(raw.x_num[2], oracle(root / "b" / "big.png", "L", (3, 3)))


def test_load_data_gives_standardized_images_for_the_cnn(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "d", {"a": 10, "b": 10})
    config = DataConfig(name="image_folder", path="d", test_fraction=0.0)
    bundle = load_data(config, base_dir=tmp_path)
    assert bundle.input_shape == (1, 6, 5) and bundle.num_classes == 2
    assert bundle.class_names == ("a", "b")
    assert bundle.info["preprocessing"]["scalar"] is True  # one mean/std for all pixels
    x = bundle.train.inputs[0]
    assert abs(float(x.mean())) < 1e-5 and abs(float(x.std(unbiased=False)) - 1) < 1e-4
    plain = load_data(config.model_copy(update={"standardize": False}), base_dir=tmp_path)
    assert float(plain.train.inputs[0].min()) >= 0 and float(plain.train.inputs[0].max()) <= 1
    assert len(plain.train) + len(plain.val or ()) == 20 and root.is_dir()


def _forbid_open(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("an image was opened although the cache should have been used")

    monkeypatch.setattr(Image, "open", refuse)


def test_the_second_load_reads_the_cache_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_folder(tmp_path / "c", {"a": 3, "b": 3})
    first = read_image_folder(root, image_size=(4, 4))
    caches = list(root.glob(".skier-cache-*.pt"))
    assert len(caches) == 1 and first.info["cache"] == str(caches[0])
    # The cache file is plain tensors: torch's safe loader reads it.
    state = torch.load(caches[0], weights_only=True)
    assert state["x"].dtype == torch.uint8 and state["classes"] == ["a", "b"]
    _forbid_open(monkeypatch)
    second = read_image_folder(root, image_size=(4, 4))
    assert second.info["cache"] == "hit"
    np.testing.assert_array_equal(second.x_num, first.x_num)
    assert second.y.tolist() == first.y.tolist() and second.class_names == first.class_names
    with pytest.raises(AssertionError, match="cache should have been used"):
        read_image_folder(root, image_size=(5, 5))  # another size is another cache


def test_a_corrupt_cache_is_read_again_and_cache_false_writes_none(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "c", {"a": 2, "b": 2})
    first = read_image_folder(root)
    Path(first.info["cache"]).write_bytes(b"garbage")
    again = read_image_folder(root)
    assert again.info["cache"] == first.info["cache"]  # rewritten, not a hit
    np.testing.assert_array_equal(again.x_num, first.x_num)
    other = make_folder(tmp_path / "n", {"a": 1, "b": 1})
    assert read_image_folder(other, cache=False).info["cache"] == "off"
    assert not list(other.glob(".skier-cache-*"))


def test_a_changed_folder_invalidates_the_cache(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "c", {"a": 2, "b": 2})
    read_image_folder(root)
    old = list(root.glob(".skier-cache-*.pt"))
    Image.fromarray(pattern(77, (6, 5))).save(root / "b" / "new.png")
    raw = read_image_folder(root)
    assert raw.info["cache"] != "hit" and len(raw) == 5
    np.testing.assert_array_equal(raw.x_num[-1], oracle(root / "b" / "new.png", "L"))
    new = list(root.glob(".skier-cache-*.pt"))
    assert len(new) == 1 and new != old  # the stale cache is removed
    # Same name, new pixels (its size or mtime changes): read again too.
    Image.fromarray(pattern(78, (6, 5))).save(root / "a" / "000.png")
    os.utime(root / "a" / "000.png", ns=(1, 1))
    again = read_image_folder(root)
    assert again.info["cache"] != "hit"
    np.testing.assert_array_equal(again.x_num[0], oracle(root / "a" / "000.png", "L"))


def test_an_unwritable_folder_caches_elsewhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import skier.data.images as images

    root = make_folder(tmp_path / "ro", {"a": 1, "b": 1})
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    write = images.atomic_write_bytes

    def refuse_in_root(path: Path, data: bytes, *, sync: bool = True) -> Path:
        if Path(path).parent == root:  # as a read-only folder would (tests may run as root)
            raise WriteError(f"file {str(path)!r} must be writable; got 'Permission denied'.")
        return write(path, data, sync=sync)

    monkeypatch.setattr(images, "atomic_write_bytes", refuse_in_root)
    first = read_image_folder(root)
    assert first.info["cache"].startswith(str(tmp_path / "xdg" / "skier" / "image_folder"))
    assert not list(root.glob(".skier-cache-*"))
    _forbid_open(monkeypatch)
    assert read_image_folder(root).info["cache"] == "hit"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda r: r.mkdir(), r"one subfolder of images per class.*no subfolders"),
        (lambda r: (r / "a").mkdir(parents=True), r"class subfolders hold images.*None found"),
        (lambda r: make_folder(r, {"only": 2}), r"at least 2 class subfolders.*'only'"),
        (lambda r: None, r"data\.path must be an existing folder"),
    ],
    ids=["no-subfolders", "no-images", "one-class", "missing"],
)
def test_each_unusable_folder_is_one_clear_error(tmp_path: Path, make, message: str) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "bad"
    make(root)
    with pytest.raises(DataError, match=message) as info:
        read_image_folder(root)
    assert len(info.value.problems) == 1 and "\n" not in str(info.value)


def test_an_unreadable_image_is_named(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "u", {"a": 1, "b": 1})
    (root / "b" / "broken.png").write_bytes(b"not a png at all")
    with pytest.raises(DataError, match=r"image 'b/broken\.png' must be a readable image"):
        read_image_folder(root)


def test_missing_pillow_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_folder(tmp_path / "p", {"a": 1, "b": 1})
    monkeypatch.setitem(sys.modules, "PIL", None)
    with pytest.raises(MissingExtraError, match=r"needs the Pillow package.*skier\[images\]"):
        read_image_folder(root, cache=False)


def test_config_checks(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"data\.path must be set for data\.name 'image_folder'"):
        load_raw(DataConfig(name="image_folder"))
    with pytest.raises(DataError, match=r"data\.image_size must be unset for data\.name 'digits'"):
        load_raw(DataConfig(name="digits", image_size=(8, 8)))
    with pytest.raises(DataError, match=r"data\.task must be 'classification' or 'auto'"):
        load_raw(DataConfig(name="image_folder", path="x", task="regression"))
    from skier.data import data_problems

    problems = data_problems(DataConfig(name="image_folder", path="nope"), base_dir=tmp_path)
    assert problems and problems[0].startswith("data.path must be an existing folder")


@pytest.mark.slow
def test_cli_trains_a_cnn_on_an_image_folder_and_records(tmp_path: Path) -> None:
    make_folder(tmp_path / "imgs", {"a": 12, "b": 12, "c": 12}, shape=(8, 8, 3))
    config = tmp_path / "c.yaml"
    config.write_text(
        "data: {name: image_folder, path: imgs, image_size: [6, 6], test_fraction: 0.2}\n"
        "model: {name: cnn, channels: [4], hidden_sizes: [8]}\n"
        "train: {epochs: 3, batch_size: 8}\ncheckpoint: {enabled: false}\n"
        "record: {plots: false, report: false}\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "skier", "train", str(config), "--out", str(tmp_path / "runs")]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    runs = [p for p in (tmp_path / "runs").iterdir() if (p / "result.json").is_file()]
    assert len(runs) == 1
    import json

    result = json.loads((runs[0] / "result.json").read_text())
    assert result["epochs_done"] == 3 and result["data"]["image_shape"] == [3, 6, 6]
    assert result["model"]["class"] == "CNN"
    assert list((tmp_path / "imgs").glob(".skier-cache-*.pt"))  # cached for the next run
    # A broken folder: one line, exit 2.
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: {name: image_folder, path: imgs/a}\nmodel: {name: cnn}\n")
    proc = subprocess.run([*cmd[:4], str(bad)], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "no subfolders" in proc.stderr
