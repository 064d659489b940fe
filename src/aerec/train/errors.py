"""Errors a training run raises on purpose, each with a message meant for the user."""

from __future__ import annotations

from pathlib import Path


class TrainingDiverged(RuntimeError):
    """The loss became NaN/inf or exploded; the run stopped before applying that step.

    ``checkpoint`` is the last good checkpoint on disk (``last.pt`` of the previous epoch), or
    ``None`` when the first epoch diverged.
    """

    def __init__(
        self,
        epoch: int,
        batch: int,
        batches: int,
        loss: float,
        limit: float,
        lr: float,
        checkpoint: Path | None = None,
        checkpoint_epoch: int | None = None,
    ) -> None:
        self.epoch = epoch
        self.batch = batch
        self.batches = batches
        self.loss = loss
        self.limit = limit
        self.lr = lr
        self.checkpoint = checkpoint
        self.checkpoint_epoch = checkpoint_epoch
        super().__init__(self._message())

    def _message(self) -> str:
        where = f"epoch {self.epoch}, batch {self.batch}/{self.batches}"
        what = "is not a number" if self.loss != self.loss else f"reached {self.loss:.4g}"
        if self.loss == float("inf"):
            what = "is infinite"
        kept = (
            f"the last good checkpoint is {self.checkpoint} (epoch {self.checkpoint_epoch})"
            if self.checkpoint is not None
            else "no epoch completed, so no checkpoint was written"
        )
        return (
            f"training diverged at {where}: the loss {what} (limit {self.limit:.4g}); the run "
            f"stopped without applying that step; {kept}. Try a smaller learning rate "
            f"(--lr, now {self.lr:g})."
        )

    def with_checkpoint(self, path: Path | None, epoch: int | None) -> TrainingDiverged:
        """The same error, naming the checkpoint that was kept."""
        return TrainingDiverged(
            self.epoch, self.batch, self.batches, self.loss, self.limit, self.lr, path, epoch
        )


class IncompatibleResume(ValueError):
    """``resume=True`` with a configuration or dataset that differs from the saved run's."""
