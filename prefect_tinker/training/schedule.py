"""Where each optimizer step's batch comes from.

Steps are numbered from 0 over all epochs in order; step `s` trains on batch `index` of
epoch `epoch` as returned by `dataset.batches(batch_size, epoch, seed)`. Resume relies on this
mapping being a pure function of (dataset, config).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from prefect_tinker.errors import DatasetError
from prefect_tinker.training.config import TrainConfig

if TYPE_CHECKING:  # importing tinker loads torch; this module stays importable without it
    import tinker


class BatchSource(Protocol):
    """What `train` needs from a dataset (`prefect_tinker.data.ChatDataset` is one)."""

    @property
    def fingerprint(self) -> str: ...

    def batches(self, batch_size: int, epoch: int, seed: int) -> list[list[tinker.Datum]]: ...


@dataclass(frozen=True)
class BatchPlan:
    """The step -> (epoch, batch index) mapping of a run.

    Example:
        >>> plan = BatchPlan(batches_per_epoch=(3, 3), total_steps=5)
        >>> plan.locate(0), plan.locate(4)
        ((0, 0), (1, 1))
    """

    batches_per_epoch: tuple[int, ...]
    total_steps: int

    @classmethod
    def build(cls, dataset: BatchSource, config: TrainConfig) -> BatchPlan:
        counts = tuple(
            len(dataset.batches(config.batch_size, epoch, config.seed))
            for epoch in range(config.num_epochs)
        )
        available = sum(counts)
        if available == 0:
            raise DatasetError(
                f"the dataset (fingerprint {dataset.fingerprint!r}) yields no training batches "
                f"for batch_size={config.batch_size}; add examples or lower batch_size."
            )
        total = available if config.max_steps is None else min(available, config.max_steps)
        return cls(batches_per_epoch=counts, total_steps=total)

    def locate(self, step: int) -> tuple[int, int]:
        """(epoch, batch index) of 0-based `step`; `step == total_steps` maps past the end."""
        if not 0 <= step <= self.total_steps:
            raise ValueError(f"step {step} is outside 0..{self.total_steps}")
        remaining = step
        for epoch, count in enumerate(self.batches_per_epoch):
            if remaining < count:
                return epoch, remaining
            remaining -= count
        return len(self.batches_per_epoch), 0


class EpochBatches:
    """Batches of one epoch at a time, computed on first use (epochs are visited in order)."""

    def __init__(self, dataset: BatchSource, config: TrainConfig) -> None:
        self._dataset = dataset
        self._config = config
        self._epoch = -1
        self._batches: Sequence[list[tinker.Datum]] = ()

    def get(self, epoch: int, index: int) -> list[tinker.Datum]:
        if epoch != self._epoch:
            self._batches = self._dataset.batches(self._config.batch_size, epoch, self._config.seed)
            self._epoch = epoch
        return self._batches[index]
