"""A folder of images in class subfolders (``data.name: image_folder``), read with Pillow.

``DIR/cat/1.png, DIR/cat/2.jpg, DIR/dog/x.png`` is a two-class set: the class is the name of
the subfolder right under ``DIR`` (sorted; label ``k`` is the ``k``-th name) and every file
below it (nested folders too) whose extension is one of :data:`IMAGE_EXTENSIONS` is an example;
other files, hidden files and folders, and files directly in ``DIR`` are ignored. A subfolder
with no images is not a class.

Each image becomes ``channels x H x W`` float32 pixels in ``[0, 1]`` (the 8-bit values / 255):
converted to grayscale (``channels: 1``, Pillow's ``L``) or RGB (``3``; alpha is dropped, a
GIF gives its first frame), then resized to ``image_size: [H, W]`` with bilinear
interpolation. Without ``image_size`` every image must already have the same size (nothing is
resized behind the user's back); without ``channels`` the set is grayscale when every image is
(modes ``1``, ``L``, ``LA``, ``I``, ``F``) and RGB otherwise.

The first read decodes every image and saves the result as ``.skier-cache-<key>.pt`` in
``DIR`` (``torch.save``; read back with ``weights_only=True``); ``key`` hashes the file list,
each file's size and modification time, ``image_size`` and ``channels``, so adding, removing or
changing an image (or a setting) reads the folder again and replaces the old cache. When
``DIR`` cannot be written the cache goes to ``$XDG_CACHE_HOME/skier/image_folder`` (default
``~/.cache/...``); when neither can, nothing is cached.

>>> IMAGE_EXTENSIONS
('.bmp', '.gif', '.jpeg', '.jpg', '.png', '.webp')
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from skier._io import atomic_write_bytes
from skier.data.raw import RawData
from skier.errors import DataError, MissingExtraError, SkierError, problem

__all__ = ["IMAGE_EXTENSIONS", "read_image_folder"]

IMAGE_EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".png", ".webp")
_GRAY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"})
_CACHE_PREFIX = ".skier-cache-"
_CACHE_VERSION = 1  # bump when what the cache holds, or how images are read, changes
FIELD = "data.path"


def _pillow() -> Any:
    try:
        from PIL import Image
    except ImportError:
        raise MissingExtraError(
            "data.name 'image_folder' needs the Pillow package; install it with: "
            "pip install 'skier[images]'"
        ) from None
    return Image


def _visible(path: Path, root: Path) -> bool:
    return not any(part.startswith(".") for part in path.relative_to(root).parts)


def _list_images(root: Path) -> tuple[list[str], list[Path], list[int]]:
    """Class names (sorted), image files and their labels; one clear error when unusable."""
    if not root.is_dir():
        hint = "Check the path; relative paths are read from the config file's folder."
        raise DataError(problem(FIELD, "an existing folder of class subfolders", str(root), hint))
    subfolders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not subfolders:
        raise DataError(
            problem(FIELD, "a folder with one subfolder of images per class", str(root),
                    "It has no subfolders: put each class's images in a folder named after it.")
        )  # fmt: skip
    classes: list[str] = []
    files: list[Path] = []
    labels: list[int] = []
    for folder in subfolders:
        found = sorted(
            p
            for p in folder.rglob("*")
            if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file() and _visible(p, root)
        )
        if found:
            labels += [len(classes)] * len(found)
            classes.append(folder.name)
            files += found
    if not files:
        raise DataError(
            problem(FIELD, f"a folder whose class subfolders hold images "
                    f"({', '.join(IMAGE_EXTENSIONS)})", str(root), "None found.")
        )  # fmt: skip
    if len(classes) < 2:
        raise DataError(
            problem(FIELD, "a folder with images in at least 2 class subfolders", str(root),
                    f"Only {classes[0]!r} holds images.")
        )  # fmt: skip
    return classes, files, labels


def _cache_key(
    root: Path, files: Sequence[Path], image_size: tuple[int, int] | None, channels: int | None
) -> str:
    entries = []
    for f in files:
        st = f.stat()
        entries.append([f.relative_to(root).as_posix(), st.st_size, st.st_mtime_ns])
    text = json.dumps([_CACHE_VERSION, image_size, channels, entries])
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def _cache_places(root: Path, key: str) -> list[tuple[Path, str]]:
    """(folder, file-name prefix) pairs the cache may live in, first choice first."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    where = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:12]
    return [(root, _CACHE_PREFIX), (Path(base) / "skier" / "image_folder", f"{where}-")]


def _read_cache(path: Path, count: int) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # a corrupt or foreign cache is only a miss: the folder is read again
        return None
    ok = (
        isinstance(state, dict)
        and isinstance(state.get("x"), torch.Tensor)
        and isinstance(state.get("y"), torch.Tensor)
        and tuple(state["y"].shape) == (count,)
        and state["x"].dtype == torch.uint8
        and state["x"].dim() == 4
        and state["x"].shape[0] == count
        and isinstance(state.get("classes"), list)
    )
    return state if ok else None


def _write_cache(places: list[tuple[Path, str]], key: str, state: dict[str, Any]) -> str | None:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    for folder, prefix in places:
        target = folder / f"{prefix}{key}.pt"
        try:
            atomic_write_bytes(target, buffer.getvalue(), sync=False)
        except (SkierError, OSError):
            continue
        for old in folder.glob(f"{prefix}*.pt"):  # older versions of this folder's cache
            if old != target:
                old.unlink(missing_ok=True)
        return str(target)
    return None


def _decode(
    root: Path, files: Sequence[Path], image_size: tuple[int, int] | None, channels: int | None
) -> np.ndarray:
    """Every image as uint8 ``N x C x H x W``."""
    image_mod = _pillow()

    def unreadable(f: Path, exc: Exception) -> DataError:
        return DataError(
            problem(f"{FIELD}: image {f.relative_to(root).as_posix()!r}", "a readable image",
                    str(f), f"Pillow says: {exc}. Fix or remove the file.")
        )  # fmt: skip

    modes, sizes = [], []
    for f in files:  # headers only: Pillow reads pixels lazily
        try:
            with image_mod.open(f) as im:
                modes.append(im.mode)
                sizes.append(im.size)
        except (OSError, ValueError, image_mod.DecompressionBombError) as exc:
            raise unreadable(f, exc) from None
    if channels is None:
        channels = 1 if all(m in _GRAY_MODES for m in modes) else 3
    if image_size is None:
        distinct = sorted(set(sizes))
        if len(distinct) > 1:
            a, b = (files[sizes.index(s)].relative_to(root).as_posix() for s in distinct[:2])
            raise DataError(
                problem("data.image_size", "set when the images differ in size",
                        None, f"{a!r} is {distinct[0][1]}x{distinct[0][0]} and {b!r} is "
                        f"{distinct[1][1]}x{distinct[1][0]} (H x W); set data.image_size: [H, W] "
                        "to resize them all.")
            )  # fmt: skip
        width, height = sizes[0]
    else:
        height, width = image_size
    out = np.empty((len(files), channels, height, width), dtype=np.uint8)
    mode = "L" if channels == 1 else "RGB"
    for i, f in enumerate(files):
        try:
            with image_mod.open(f) as im:
                converted = im.convert(mode)
                if converted.size != (width, height):
                    converted = converted.resize((width, height), image_mod.Resampling.BILINEAR)
                pixels = np.asarray(converted, dtype=np.uint8)
        except (OSError, ValueError, image_mod.DecompressionBombError) as exc:
            raise unreadable(f, exc) from None
        out[i] = pixels[None] if channels == 1 else pixels.transpose(2, 0, 1)
    return out


def read_image_folder(
    path: str | Path,
    image_size: Sequence[int] | None = None,
    channels: int | None = None,
    cache: bool = True,
) -> RawData:
    """Read a folder of class subfolders of images as ``N x C x H x W`` pixels in ``[0, 1]``.

    See the module docstring for the rules; ``cache=False`` neither reads nor writes the cache.
    ``info["cache"]`` says what happened: ``"hit"``, the file written, or ``"off"``.

    >>> raw = read_image_folder("examples/data/digit_images")  # doctest: +SKIP
    """
    root = Path(path)
    size = None if image_size is None else (int(image_size[0]), int(image_size[1]))
    if size is not None and (len(image_size or ()) != 2 or min(size) < 1):
        raise DataError(problem("data.image_size", "[H, W], two positive integers", image_size))
    if channels not in (None, 1, 3):
        raise DataError(problem("data.channels", "1 (grayscale) or 3 (RGB)", channels))
    classes, files, labels = _list_images(root)
    key = _cache_key(root, files, size, channels)
    places = _cache_places(root, key)
    state = None
    status = "off"
    if cache:
        for folder, prefix in places:
            state = _read_cache(folder / f"{prefix}{key}.pt", len(files))
            if state is not None:
                status = "hit"
                break
    if state is None:
        pixels = _decode(root, files, size, channels)
        state = {
            "x": torch.from_numpy(pixels),
            "y": torch.tensor(labels, dtype=torch.int64),
            "classes": classes,
        }
        if cache:
            status = _write_cache(places, key, state) or "off"
    x = state["x"].numpy().astype(np.float32) / np.float32(255.0)
    info = {
        "source": str(root),
        "images": len(files),
        "image_shape": list(x.shape[1:]),
        "cache": status,
    }
    return RawData.numeric(
        x,
        state["y"].numpy().astype(np.int64),
        [],
        [str(c) for c in state["classes"]],
        "classification",
        root.name or "image_folder",
        info,
    )
