"""Your own torch Dataset, read from files as training goes, with random augmentation.

    python examples/own_dataset.py                    # fit() from Python, 2 worker processes
    python examples/own_dataset.py --quick --record runs   # shorter; also a recorded run
    PYTHONPATH=examples skier train examples/own_dataset.yaml   # the same from the CLI

The first use writes scikit-learn's digits (shipped with it, nothing is downloaded) as one
``.npy`` file per image under ``examples/data/digit_files/{train,val}``; ``DigitFiles`` reads one
file per example and shifts it by a random pixel and adds noise (numpy's and torch's global
RNGs). skier seeds every read from (train.seed, epoch, index), so the run is the same with
``train.num_workers: 0`` or ``2`` and after a resume.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch.utils.data import Dataset

HERE = Path(__file__).resolve().parent


class DigitFiles(Dataset[tuple[torch.Tensor, int]]):
    """One ``.npy`` file per 8x8 digit, named ``{index}_{label}.npy``; items are a
    ``1 x 8 x 8`` float image and its label."""

    classes: ClassVar[list[str]] = [str(d) for d in range(10)]  # skier counts the classes here

    def __init__(self, folder: Path, *, augment: bool) -> None:
        self.files = sorted(folder.glob("*.npy"))
        self.labels = [int(f.stem.split("_")[1]) for f in self.files]
        self.augment = augment

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        image = np.load(self.files[i])  # read at each use: nothing is held in memory
        if self.augment:
            shift = np.random.randint(-1, 2, size=2)
            image = np.roll(image, tuple(int(s) for s in shift), axis=(0, 1))
        x = torch.from_numpy((image - 0.5) / 0.5).float().unsqueeze(0)
        if self.augment:
            x = x + 0.1 * torch.randn_like(x)
        return x, self.labels[i]


def write_digit_files(root: Path) -> Path:
    """The digits as ``root/train/*.npy`` and ``root/val/*.npy`` (every fifth image: val)."""
    from skier.data import digits

    raw = digits()
    assert raw.x_num is not None
    for i, (pixels, label) in enumerate(zip(raw.x_num, raw.y, strict=True)):
        folder = root / ("val" if i % 5 == 0 else "train")
        folder.mkdir(parents=True, exist_ok=True)
        np.save(folder / f"{i:04d}_{int(label)}.npy", (pixels / 16.0).reshape(8, 8))
    return root


def make(root: str = "data/digit_files", augment: bool = True) -> dict[str, Any]:
    """``data.dataset: own_dataset:make``: the train and val Datasets (``root`` relative to
    this file's folder; written the first time)."""
    folder = Path(root) if Path(root).is_absolute() else HERE / root
    if not (folder / "train").is_dir():
        write_digit_files(folder)
    return {
        "train": DigitFiles(folder / "train", augment=augment),
        "val": DigitFiles(folder / "val", augment=False),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 epochs")
    parser.add_argument("--record", metavar="DIR", help="also train the YAML as a run in DIR")
    args = parser.parse_args()
    epochs = 2 if args.quick else 10

    from skier.config import DataConfig, ModelConfig, load_config
    from skier.data import load_data
    from skier.models import build_model
    from skier.train import fit

    with tempfile.TemporaryDirectory() as tmp:
        root = str(Path(tmp) / "digit_files")
        # From Python: the Datasets themselves, or the config's way (load_data), as here.
        data = load_data(DataConfig(name="dataset", dataset="own_dataset:make",
                                    dataset_kwargs={"root": root}))  # fmt: skip
        print(data)
        torch.manual_seed(0)
        model = build_model(ModelConfig(name="cnn", channels=[8, 16], hidden_sizes=[32]),
                            input_shape=data.input_shape, output_size=data.output_size)  # fmt: skip
        result = fit(model, data, optimizer="adam", lr=3e-3, epochs=epochs, batch_size=64,
                     num_workers=2, seed=0, progress="off")  # fmt: skip
        last = result.history.rows[-1]
        print(f"fit: val accuracy {last['val_accuracy']:.3f} after {result.epochs_done} epochs")

        if args.record:  # the YAML, as `skier train examples/own_dataset.yaml` runs it
            from skier.runner import run_training

            overrides = [f"data.dataset_kwargs.root={root}", f"train.epochs={epochs}"]
            config = load_config(HERE / "own_dataset.yaml", overrides)
            outcome = run_training(config, base_dir=HERE, out_dir=args.record, progress=False)
            print(f"recorded as run {outcome.run_id} in {args.record}")


if __name__ == "__main__":
    main()
