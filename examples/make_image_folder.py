"""Write scikit-learn's digits as PNG files in class subfolders, then train on the folder.

    python examples/make_image_folder.py examples/data/digit_images     # write, then train
    python examples/make_image_folder.py DIR --no-train                 # only write the images
    python examples/make_image_folder.py --quick --record runs          # the tests run this

The folder is what ``data.name: image_folder`` reads (``examples/image_folder.yaml``):
``DIR/0/0007.png``, ``DIR/1/0001.png``, ... — 8x8 grayscale images, pixel values 0..16 scaled
to 0..255. Nothing is downloaded: the digits ship with scikit-learn. Needs Pillow
(``pip install 'skier[images]'``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits

HERE = Path(__file__).resolve().parent


def write_digit_images(folder: str | Path, per_class: int | None = None) -> Path:
    """Write the digits (the first ``per_class`` of each class, or all) as ``folder/k/i.png``."""
    folder = Path(folder)
    bunch = load_digits()
    pixels = np.rint(bunch.images * (255 / 16)).astype(np.uint8)
    written: dict[int, int] = {}
    for i, (image, label) in enumerate(zip(pixels, bunch.target, strict=True)):
        k = int(label)
        if per_class is not None and written.get(k, 0) >= per_class:
            continue
        (folder / str(k)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image, mode="L").save(folder / str(k) / f"{i:04d}.png")
        written[k] = written.get(k, 0) + 1
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", help="where to write the images (default: a "
                        "temporary folder)")  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="40 images a class, 2 epochs")
    parser.add_argument("--record", metavar="DIR", default="runs", help="runs folder")
    parser.add_argument("--no-train", action="store_true", help="only write the images")
    args = parser.parse_args()

    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        folder = write_digit_images(args.folder or Path(tmp) / "digit_images",
                                    per_class=40 if args.quick else None)  # fmt: skip
        count = sum(1 for _ in folder.rglob("*.png"))
        print(f"wrote {count} PNG images in {folder}")
        if args.no_train:
            return
        from skier.config import load_config
        from skier.runner import run_training

        overrides = [f"data.path={folder.resolve()}"]
        if args.quick:
            overrides.append("train.epochs=2")
        config = load_config(HERE / "image_folder.yaml", overrides)
        outcome = run_training(config, base_dir=HERE, out_dir=args.record, progress=False)
        accuracy = outcome.result.test_metrics["test_accuracy"]
        print(f"test accuracy {accuracy:.3f} after {outcome.result.epochs_done} epochs")
        print(f"recorded as run {outcome.run_id} in {args.record}")


if __name__ == "__main__":
    main()
