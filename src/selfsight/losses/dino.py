"""DINO's self-distillation loss (Caron et al., 2021) with the teacher's centering."""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from selfsight.nn.distributed import is_distributed


class DINOLoss(nn.Module):
    """Cross entropy between the centred, sharpened teacher distribution of each global view and
    the student distribution of every other view, averaged over those pairs.

    The center is an EMA of the teacher's batch-mean output: subtracting it keeps one dimension
    from dominating, sharpening keeps the output from going uniform (sec. 3.1 of the paper).
    """

    def __init__(self, out_dim: int, student_temp: float = 0.1, center_momentum: float = 0.9):
        super().__init__()
        self.student_temp, self.center_momentum = student_temp, center_momentum
        self.register_buffer("center", torch.zeros(1, out_dim))

    def forward(self, student: list[torch.Tensor], teacher: list[torch.Tensor],
                teacher_temp: float) -> torch.Tensor:
        """student: one (n, K) tensor per view (global views first); teacher: one per global
        view. Teacher view i is not matched with student view i (the same crop)."""
        targets = [F.softmax((t.float() - self.center) / teacher_temp, dim=1).detach()
                   for t in teacher]
        log_probs = [F.log_softmax(s.float() / self.student_temp, dim=1) for s in student]
        total, pairs = 0.0, 0
        for i, target in enumerate(targets):
            for j, log_prob in enumerate(log_probs):
                if i != j:
                    total = total + (-target * log_prob).sum(1).mean()
                    pairs += 1
        self.update_center(torch.cat(teacher))
        return total / pairs

    @torch.no_grad()
    def update_center(self, teacher: torch.Tensor) -> None:
        mean = teacher.float().sum(0, keepdim=True)
        count = torch.tensor(float(teacher.shape[0]), device=teacher.device)
        if is_distributed():
            dist.all_reduce(mean)
            dist.all_reduce(count)
        self.center.mul_(self.center_momentum).add_(mean / count * (1 - self.center_momentum))
