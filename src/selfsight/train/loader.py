"""Training batches as a pure function of the global step, so a resumed run sees exactly the
batches an uninterrupted run would have seen, on any number of processes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler


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
    j = s % steps; process r of w takes every w-th row of it. Incomplete batches are dropped."""

    def __init__(self, num_images: int, global_batch: int, seed: int = 0, rank: int = 0,
                 world: int = 1, start_step: int = 0) -> None:
        if global_batch % world:
            raise ValueError(f"batch size {global_batch} is not divisible by {world} processes")
        if num_images < global_batch:
            raise ValueError(f"{num_images} images are fewer than one batch of {global_batch}; "
                             "lower --batch-size")
        self.num_images, self.global_batch = num_images, global_batch
        self.seed, self.rank, self.world = seed, rank, world
        self.steps_per_epoch = num_images // global_batch
        self.next_step = start_step

    def __len__(self) -> int:
        return self.steps_per_epoch

    def __iter__(self) -> Iterator[list[int]]:
        epoch, start = divmod(self.next_step, self.steps_per_epoch)
        gen = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        order = torch.randperm(self.num_images, generator=gen).numpy()
        for step in range(start, self.steps_per_epoch):
            self.next_step += 1
            rows = order[step * self.global_batch:(step + 1) * self.global_batch]
            yield rows[self.rank::self.world].tolist()


def training_loader(images: np.ndarray, sampler: StepBatchSampler, workers: int = 0,
                    pin_memory: bool = False) -> DataLoader:
    return DataLoader(UInt8Images(images), batch_sampler=sampler, collate_fn=pass_through,
                      num_workers=workers, pin_memory=pin_memory,
                      persistent_workers=workers > 0)


class StepDataModule(L.LightningDataModule):
    """Builds the step sampler once the strategy knows this process's rank and the world size."""

    def __init__(self, images: np.ndarray, global_batch: int, seed: int = 0, start_step: int = 0,
                 workers: int = 0) -> None:
        super().__init__()
        self.images, self.global_batch, self.seed = images, global_batch, seed
        self.start_step, self.workers = start_step, workers

    def train_dataloader(self) -> DataLoader:
        sampler = StepBatchSampler(len(self.images), self.global_batch, self.seed,
                                   self.trainer.global_rank, self.trainer.world_size,
                                   self.start_step)
        pin = self.trainer.strategy.root_device.type == "cuda"
        return training_loader(self.images, sampler, self.workers, pin)
