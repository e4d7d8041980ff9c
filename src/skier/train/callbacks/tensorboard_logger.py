"""TensorBoard: the run's curves, hyper-parameters and config as TensorBoard event files."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from skier.train.callbacks.trackers import StepSeries, TrackerLogger
from skier.train.state import TrainState

__all__ = ["TensorBoardLogger", "scalar_tag"]

# Logged keys that are not one split of a metric: one chart each, under their own name.
_PLAIN = frozenset({"lr", "epoch_time", "penalty"})


def scalar_tag(key: str) -> str:
    """The chart a logged key goes on: the training and validation values of one metric share
    a chart (``loss/train``, ``loss/val``); ``lr`` and ``epoch_time`` have their own.

    >>> [scalar_tag(k) for k in ("loss", "val_loss", "val_ema_accuracy", "lr")]
    ['loss/train', 'loss/val', 'ema_accuracy/val', 'lr']
    """
    if key in _PLAIN:
        return key
    if key.startswith("val_"):
        return f"{key[4:]}/val"
    return f"{key}/train"


class TensorBoardLogger(TrackerLogger):
    """Writes every epoch metric as a scalar (step = epoch; ``loss/train`` and ``loss/val`` on
    one chart), the lr of every optimizer step (``lr/step``, step = optimizer step), the config
    as text, and at the end the hyper-parameters with the final and best metrics in the HParams
    tab, and the PNG figures among the files it is given at the end (the learning curves and
    the diagnostic figures of a run directory) as images ``figures/NAME`` in the Images tab,
    with :mod:`torch.utils.tensorboard` into ``log_dir``. A resumed run writes into the same
    folder and goes on from the epoch it had reached (see :mod:`~skier.train.callbacks.trackers`);
    it opens its writer with ``purge_step`` = that epoch + 1, so whatever the interrupted session
    wrote after its last recorded position (an epoch sent just before a kill) is hidden by
    TensorBoard's readers (its server, fast or not, and ``EventAccumulator``) rather than shown
    twice.

    Needs the ``tensorboard`` package (``pip install 'skier[tensorboard]'``). In a config,
    ``record.loggers: [tensorboard]`` writes into each run directory's ``tensorboard/`` folder,
    so ``tensorboard --logdir runs`` shows every run.

    >>> logger = TensorBoardLogger("tb/run1", params={"optim.lr": 0.1})
    >>> fit(model, data, callbacks=[logger])  # doctest: +SKIP
    """

    name = "tensorboard"
    module = "tensorboard"
    extra = "tensorboard"

    def __init__(
        self,
        log_dir: str | Path,
        *,
        params: Mapping[str, Any] | None = None,
        config_text: str | None = None,
        position_file: str | Path | None = None,
        flush_every_s: float = 5.0,
        finish_timeout_s: float = 60.0,
        finish_at_fit_end: bool = True,
        echo: Callable[[str], None] | None = None,
    ) -> None:
        self.log_dir = Path(log_dir)
        super().__init__(
            params=params,
            config_text=config_text,
            # By default beside the event files, so a resume into the same folder goes on.
            position_file=position_file or self.log_dir / "skier_position.json",
            flush_every_s=flush_every_s,
            finish_timeout_s=finish_timeout_s,
            finish_at_fit_end=finish_at_fit_end,
            echo=echo,
        )
        self._writer: Any = None

    def _open(self, state: TrainState, position: Mapping[str, Any]) -> dict[str, Any]:
        from torch.utils.tensorboard import SummaryWriter

        self.log_dir.mkdir(parents=True, exist_ok=True)
        done = int(position.get("epoch", 0))
        # Every session starts with TensorBoard's restart marker at the first epoch it sends
        # (purge_step): readers hide what an earlier session wrote at that step or later, so
        # an epoch it sent just before it was killed, before its position was written, is not
        # shown twice. (TensorBoard's server ignores the first marker it reads in a folder:
        # a first session writes one too, so that a resumed session's counts.)
        # Events reach the file only when this logger flushes, so the position never runs ahead.
        self._writer = SummaryWriter(str(self.log_dir), max_queue=10**6, flush_secs=10**6,
                                     purge_step=done + 1)  # fmt: skip
        if self.config_text and not done:
            text = "\n".join("    " + line for line in self.config_text.splitlines())
            self._writer.add_text("config", text, 0)
        # The marker hides every tag's steps past the epoch, the per-step series' too (their
        # step is the optimizer step): those are sent again, from the restored history.
        steps = position.get("steps", {})
        return {"steps": {key: min(int(last), done) for key, last in steps.items()}}

    def _send(self, rows: Sequence[Mapping[str, float]], steps: StepSeries) -> None:
        add = self._writer.add_scalar
        for row in rows:
            epoch = int(row["epoch"])
            for key, value in row.items():
                if key != "epoch":
                    add(scalar_tag(key), value, epoch)
        for key, points in steps.items():
            for step, value in points:
                add(f"{key}/step", value, step)
        self._writer.flush()

    def _close(
        self, tags: Mapping[str, str], summary: Mapping[str, float], files: list[Path]
    ) -> None:
        from torch.utils.tensorboard.summary import hparams

        writer = self._writer
        metrics = {f"hparams/{k}": v for k, v in summary.items()}
        last = int(self.position.get("epoch", 0))
        hp = {k: v for k, v in self.params.items() if isinstance(v, bool | int | float | str)}
        if hp and metrics:
            exp, start, end = hparams(hp, metrics)
            for proto in (exp, start, end):
                writer.file_writer.add_summary(proto)
            for tag, value in metrics.items():
                writer.add_scalar(tag, value, last)
        writer.add_text("status", f"{tags['status']} {tags['stop_reason']}".strip(), last)
        for path in files:
            if path.suffix.lower() == ".png":
                _add_png(writer, path, last)
        writer.close()


def _add_png(writer: Any, path: Path, step: int) -> None:
    """A PNG file as the image ``figures/STEM`` (its RGB channels, as the file shows them)."""
    from matplotlib.image import imread

    pixels = imread(str(path))  # float in [0, 1] for a PNG, H x W x (3 or 4), or H x W
    if pixels.ndim == 2:
        writer.add_image(f"figures/{path.stem}", pixels, step, dataformats="HW")
    else:
        writer.add_image(f"figures/{path.stem}", pixels[:, :, :3], step, dataformats="HWC")
