"""Work done in child processes by the reliability tests (importable by a forkserver)."""

from __future__ import annotations

from typing import Any


def train(config: dict[str, Any], out: str, resume: str | None, store: str | None) -> None:
    """One recorded skier run (or the resumption of one), as ``skier train`` does it."""
    import torch

    from skier.config import config_from_mapping
    from skier.runner import run_training

    torch.set_num_threads(1)  # several of these share two cores
    run_training(
        config_from_mapping(config), out_dir=out, resume_dir=resume, store_url=store,
        progress=False,
    )  # fmt: skip
