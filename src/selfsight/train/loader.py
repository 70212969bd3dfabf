"""Training batches as a pure function of the global step, so a resumed run sees exactly the
batches an uninterrupted run would have seen, on any number of processes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from selfsight.errors import UserError


class UInt8Images(Dataset):
    """(N, H, W, C) uint8 array (often a memmap) -> batches {"image": (B, C, H, W) uint8}.

    ``__getitems__`` gathers a whole batch with one fancy index instead of B ``__getitem__``
    calls and a collate; decoding already happened once, in the cache.
    """

    def __init__(self, images: np.ndarray) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return self.__getitems__([index])

    def __getitems__(self, indices: list[int]) -> dict[str, torch.Tensor]:
        batch = torch.from_numpy(np.ascontiguousarray(self.images[indices]))  # (B, H, W, C)
        return {"image": batch.permute(0, 3, 1, 2).contiguous(), "index": torch.tensor(indices)}


def pass_through(batch: Any) -> Any:
    """The dataset already returns a batch; nothing to collate."""
    return batch


class StepBatchSampler(Sampler[list[int]]):
    """Global batch of step s = rows [j*B, (j+1)*B) of the permutation of epoch s // steps, with
    j = s % steps; process r of w takes every w-th row of it. Incomplete batches are dropped.

    Important-sample sampling: with ``scores`` (one per image, e.g. its latest loss) and
    ``importance`` f > 0, only (1 - f) B rows come from the permutation (every image is still
    seen once per epoch) and f B are drawn without replacement with probability proportional
    to the scores, seeded by the step: images that still teach something come back sooner.
    """

    def __init__(self, num_images: int, global_batch: int, seed: int = 0, rank: int = 0,
                 world: int = 1, start_step: int = 0, scores: torch.Tensor | None = None,
                 importance: float = 0.0) -> None:
        if global_batch % world:
            raise UserError(f"batch size {global_batch} is not divisible by {world} processes")
        if num_images < global_batch:
            raise UserError(f"{num_images} images are fewer than one batch of {global_batch}; "
                            "lower --batch-size")
        self.num_images, self.global_batch = num_images, global_batch
        self.seed, self.rank, self.world = seed, rank, world
        self.scores = scores
        self.drawn = round(importance * global_batch) if scores is not None else 0
        self.walked = global_batch - self.drawn  # rows from the epoch's permutation
        self.steps_per_epoch = num_images // self.walked
        self.next_step = start_step

    def __len__(self) -> int:
        return self.steps_per_epoch

    def __iter__(self) -> Iterator[list[int]]:
        epoch, start = divmod(self.next_step, self.steps_per_epoch)
        gen = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        order = torch.randperm(self.num_images, generator=gen).numpy()
        for step in range(start, self.steps_per_epoch):
            rows = order[step * self.walked:(step + 1) * self.walked]
            if self.drawn:
                gen = torch.Generator().manual_seed(self.seed * 100_003 + 7_919 * self.next_step
                                                    + 1_000_000_007)
                weights = self.scores.float().clamp_min(1e-6)
                drawn = torch.multinomial(weights, self.drawn, generator=gen).numpy()
                rows = np.concatenate([rows, drawn])
            self.next_step += 1
            yield rows[self.rank::self.world].tolist()


def training_loader(images: np.ndarray, sampler: StepBatchSampler, workers: int = 0,
                    pin_memory: bool = False) -> DataLoader:
    return DataLoader(UInt8Images(images), batch_sampler=sampler, collate_fn=pass_through,
                      num_workers=workers, pin_memory=pin_memory,
                      persistent_workers=workers > 0)


class StepDataModule(L.LightningDataModule):
    """Builds the step sampler once the strategy knows this process's rank and the world size."""

    def __init__(self, images: np.ndarray, global_batch: int, seed: int = 0, start_step: int = 0,
                 workers: int = 0, importance: float = 0.0) -> None:
        super().__init__()
        self.images, self.global_batch, self.seed = images, global_batch, seed
        self.start_step, self.workers, self.importance = start_step, workers, importance
        # Each image's latest training loss (starts equal: uniform); saved in checkpoints.
        self.scores = torch.ones(len(images)) if importance > 0 else None

    def record_losses(self, index: torch.Tensor, losses: torch.Tensor) -> None:
        """Called by the method each step with the global batch's indices and losses."""
        if self.scores is not None:
            self.scores[index.cpu()] = losses.detach().float().cpu()

    def state_dict(self) -> dict[str, Any]:
        return {"scores": self.scores} if self.scores is not None else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.scores is not None and "scores" in state:
            self.scores.copy_(state["scores"])

    def train_dataloader(self) -> DataLoader:
        sampler = StepBatchSampler(len(self.images), self.global_batch, self.seed,
                                   self.trainer.global_rank, self.trainer.world_size,
                                   self.start_step, self.scores, self.importance)
        pin = self.trainer.strategy.root_device.type == "cuda"
        return training_loader(self.images, sampler, self.workers, pin)
