"""PatchCore (Roth et al., 2022) memory bank: blocked kNN distances, k-center greedy coresets."""

from __future__ import annotations

import math

import torch
from tqdm.auto import tqdm

from selfsight.errors import UserError


def knn_distance(queries: torch.Tensor, bank: torch.Tensor, k: int = 1,
                 query_block: int = 2048, bank_block: int = 16384) -> torch.Tensor:
    """Mean Euclidean distance of each query to its ``k`` nearest bank rows: (Q, D), (M, D) -> (Q,).

    Distances are computed block by block, so memory stays at query_block x bank_block floats
    whatever Q and M are; the running k smallest are merged across bank blocks.
    """
    if bank.shape[0] == 0:
        raise ValueError("knn_distance: the memory bank is empty")
    if queries.shape[1] != bank.shape[1]:
        raise ValueError(f"knn_distance: queries have {queries.shape[1]} dims, "
                         f"the bank {bank.shape[1]}")
    k = min(k, bank.shape[0])
    out = []
    for qs in range(0, queries.shape[0], query_block):
        q = queries[qs:qs + query_block]  # (b, D)
        best: torch.Tensor | None = None
        for ms in range(0, bank.shape[0], bank_block):
            d = torch.cdist(q, bank[ms:ms + bank_block])  # (b, m)
            top = d.topk(min(k, d.shape[1]), dim=1, largest=False).values  # (b, <=k)
            if best is not None:
                top = torch.cat([best, top], dim=1).topk(k, dim=1, largest=False).values
            best = top
        out.append(best.mean(dim=1))  # (b,)
    return torch.cat(out)


def coreset_size(n: int, coreset: float) -> int:
    """``coreset`` <= 1 is a fraction of the ``n`` bank rows, > 1 a number of rows (capped at n)."""
    if coreset <= 0:
        raise UserError(f"coreset must be a fraction in (0, 1] or a row count > 1, got {coreset}")
    size = math.ceil(coreset * n) if coreset <= 1 else int(coreset)
    return max(1, min(n, size))


def kcenter_greedy(x: torch.Tensor, size: int, projection: int | None = 128, seed: int = 0,
                   progress: bool = False) -> torch.Tensor:
    """Indices of ``size`` rows of ``x`` (N, D) chosen by k-center greedy (PatchCore, sec. 3.2).

    Start from one random row; then repeatedly add the row farthest from everything chosen so
    far, so the chosen rows cover the bank with the smallest radius the greedy rule finds. Rows
    are first mapped to ``projection`` dims by a Gaussian random projection (Johnson-Lindenstrauss)
    to make each step cheap; None or >= D keeps the original space.
    """
    n, dim = x.shape
    size = min(size, n)
    gen = torch.Generator().manual_seed(seed)
    x = x.float()
    if projection and projection < dim:
        matrix = torch.randn(dim, projection, generator=gen) / math.sqrt(projection)  # (D, p)
        x = x @ matrix.to(x.device)  # (N, p)
    squared = (x * x).sum(dim=1)  # (N,)
    nearest = torch.full((n,), float("inf"), device=x.device)  # squared distance to chosen set
    chosen = torch.empty(size, dtype=torch.long)
    index = int(torch.randint(n, (1,), generator=gen))
    for step in tqdm(range(size), desc="coreset", disable=not progress, unit="row",
                     mininterval=1.0):
        chosen[step] = index
        centre = x[index]  # (p,)
        dist = squared - 2 * (x @ centre) + squared[index]  # (N,) squared distances
        nearest = torch.minimum(nearest, dist.clamp_min_(0))
        index = int(nearest.argmax())
    return chosen
