"""MaskCut (Wang et al., 2023, CutLER): repeated normalized cuts on patch features.

A normalized cut (Shi & Malik, 2000) on a graph of patches, as in TokenCut (Wang et al., 2022):
the second-smallest generalised eigenvector of ``(D - W) x = lambda D x`` splits the patches
into a salient object and the rest. MaskCut repeats the cut with the patches already found
removed from the graph, giving up to ``n_masks`` disjoint instance masks per image.

All images of a batch are cut together: iteration t solves every image's eigenproblem in one
batched call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from torch import Tensor

EigenMethod = Literal["auto", "dense", "lobpcg"]

# Above this many patches a dense eigendecomposition (O(N^3), all N eigenpairs) costs more than
# LOBPCG, which only iterates a few vectors against the (dense) graph.
DENSE_MAX_PATCHES = 1600

# 4-connectivity, as ``scipy.ndimage.label``'s default (also what TokenCut/CutLER's detect_box
# uses): on a coarse patch grid two regions touching only at a corner are weak evidence of one
# object, and 8-connectivity would merge neighbouring objects that meet diagonally.
FOUR_CONNECTED = ndimage.generate_binary_structure(2, 1)


def affinity(features: Tensor, tau: float = 0.15, eps: float = 1e-5) -> Tensor:
    """Binary patch graph of TokenCut/MaskCut: 1 where cosine similarity > tau, else eps.

    features (B, N, D) -> W (B, N, N). A zero feature vector has cosine 0 with everything, so it
    is linked to the graph only by eps edges: this is how MaskCut removes found patches.
    The small eps keeps every degree positive, so ``D^-1/2`` exists.
    """
    unit = F.normalize(features, dim=-1)  # (B, N, D)
    sim = unit @ unit.transpose(1, 2)  # (B, N, N)
    # Symmetrise before thresholding: round-off can put sim_ij and sim_ji on either side of tau.
    sim = (sim + sim.transpose(1, 2)) / 2
    return torch.where(sim > tau, 1.0, eps).to(features.dtype)


def second_eigenvector(w: Tensor, method: EigenMethod = "auto") -> Tensor:
    """Second-smallest generalised eigenvector x of the normalized cut, (D - W) x = lambda D x.

    w (B, N, N) symmetric with positive degrees -> x (B, N) in float64, on w's device, with
    arbitrary sign and scale. Solved through the symmetric normalised Laplacian
    ``L = I - D^-1/2 W D^-1/2`` (Shi & Malik, 2000): if L y = lambda y then x = D^-1/2 y.
    ``method``: "dense" (batched ``torch.linalg.eigh``), "lobpcg" (``torch.lobpcg`` per image),
    or "auto" (dense up to ``DENSE_MAX_PATCHES`` patches).
    """
    if method not in ("auto", "dense", "lobpcg"):
        raise ValueError(f"unknown eigen method {method!r}; valid: 'auto', 'dense', 'lobpcg'")
    # float64: weights span 1 down to eps=1e-5, and the eigengap of a nearly planted graph is tiny.
    w = w.double()
    inv_sqrt_degree = w.sum(-1).rsqrt()  # (B, N)
    # The normalised affinity M = I - L; its largest eigenvectors are L's smallest.
    normalised = inv_sqrt_degree[:, :, None] * w * inv_sqrt_degree[:, None, :]  # (B, N, N)
    n_patches = w.shape[-1]
    if method == "dense" or (method == "auto" and n_patches <= DENSE_MAX_PATCHES):
        laplacian = torch.eye(n_patches, dtype=w.dtype, device=w.device) - normalised
        _, vectors = torch.linalg.eigh(laplacian)  # ascending eigenvalues
        y = vectors[..., 1]  # (B, N)
    else:
        sqrt_degree = inv_sqrt_degree.reciprocal()
        y = torch.stack([_lobpcg_second_largest(m, s) for m, s in zip(normalised, sqrt_degree)])
    return inv_sqrt_degree * y


def _lobpcg_second_largest(normalised: Tensor, sqrt_degree: Tensor) -> Tensor:
    """Eigenvector of the second-largest eigenvalue of one normalised affinity M (N, N).

    M's largest eigenpair is known (eigenvalue 1, vector D^1/2 1), so it is deflated away and
    LOBPCG looks for the top of what remains; a block of 3 converges faster than one vector.
    """
    trivial = sqrt_degree / sqrt_degree.norm()  # (N,)
    deflated = normalised - torch.outer(trivial, trivial)
    # A fixed start keeps the result deterministic (lobpcg would draw it from the global RNG).
    generator = torch.Generator(device="cpu").manual_seed(0)
    start = torch.randn(len(normalised), 3, generator=generator, dtype=normalised.dtype)
    _, vectors = torch.lobpcg(deflated, X=start.to(normalised.device), largest=True,
                              tol=1e-8, niter=500)
    return vectors[:, 0]


def bipartition(vector: Tensor, grid: tuple[int, int]) -> tuple[np.ndarray, int]:
    """Salient part of one NCut vector (N,) on an (h, w) patch grid -> (seed component, seed).

    As in MaskCut: split at the vector's mean; the side above the mean is the foreground unless
    3 or more of the 4 grid corners are foreground (objects rarely fill the corners), or else
    unless the patch of largest |vector| lies outside it; either case flips the vector. The seed
    is the argmax of the (possibly flipped) vector, and only the 4-connected foreground component
    holding the seed is kept. Returns an (h, w) bool array and the flat seed index.
    """
    values = vector.detach().double().cpu().numpy().reshape(grid)
    foreground = values > values.mean()
    corners = foreground[[0, 0, -1, -1], [0, -1, 0, -1]]
    peak = np.unravel_index(np.abs(values).argmax(), grid)
    if corners.sum() >= 3 or not foreground[peak]:
        values, foreground = -values, ~foreground
    seed = int(values.argmax())
    labels, _ = ndimage.label(foreground, structure=FOUR_CONNECTED)
    seed_label = labels.flat[seed]
    # A constant vector has no side above its mean: then there is no object.
    component = labels == seed_label if seed_label > 0 else np.zeros(grid, dtype=bool)
    return component, seed


@dataclass
class MaskCutConfig:
    """MaskCut settings: CutLER paper values (its maskcut.py script defaults to tau = 0.2).

    n_masks: cuts per image (upper bound on masks returned).
    tau, eps: affinity threshold and weight of the non-edges (see ``affinity``).
    max_overlap: reject a candidate whose IoU with any accepted mask of the image exceeds this.
    min_area: reject a mask covering this fraction of the grid or less.
    eigen_method: see ``second_eigenvector``.
    """

    n_masks: int = 3
    tau: float = 0.15
    eps: float = 1e-5
    max_overlap: float = 0.5
    min_area: float = 0.01
    eigen_method: EigenMethod = "auto"


def maskcut(features: Tensor, config: MaskCutConfig | None = None) -> list[np.ndarray]:
    """MaskCut (Wang et al., 2023): up to n_masks disjoint instance masks per image.

    features (B, D, h, w) patch features -> per image a (K_i, h, w) bool array, K_i <= n_masks,
    in the order found. Each round cuts every image's graph once (one batched eigensolve), then
    drops the candidate's patches from that image's graph by zeroing their features.

    A candidate (the seed component of ``bipartition``) is rejected when
      - its IoU with any mask already accepted for that image is > max_overlap, or
      - what remains of it after removing patches dropped in earlier rounds covers
        <= min_area of the grid.
    An accepted mask is that remainder, so masks are disjoint. Differences from CutLER's
    maskcut.py: there the first round is never filtered, the IoU is taken only against the
    previous round's mask (all-zero after a rejection), the area test uses the candidate
    before removal, and a rejected candidate
    stays in the graph, so the next round recomputes the same cut; here it is dropped instead so
    that the next round can look elsewhere.
    """
    config = config or MaskCutConfig()
    batch, _, height, width = features.shape
    grid = (height, width)
    patches = features.flatten(2).transpose(1, 2).float()  # (B, N, D)
    dropped = np.zeros((batch, height, width), dtype=bool)  # patches removed from each graph
    found: list[list[np.ndarray]] = [[] for _ in range(batch)]
    for _ in range(config.n_masks):
        keep = torch.from_numpy(~dropped.reshape(batch, -1)).to(patches.device)  # (B, N)
        w = affinity(patches * keep[..., None], config.tau, config.eps)  # (B, N, N)
        vectors = second_eigenvector(w, config.eigen_method)  # (B, N)
        for image, vector in enumerate(vectors):
            candidate, _ = bipartition(vector, grid)
            mask = candidate & ~dropped[image]
            if keep_candidate(candidate, mask, found[image], config):
                found[image].append(mask)
            dropped[image] |= candidate
    return [np.stack(masks) if masks else np.zeros((0, *grid), dtype=bool) for masks in found]


def keep_candidate(candidate: np.ndarray, mask: np.ndarray, previous: list[np.ndarray],
                   config: MaskCutConfig) -> bool:
    """MaskCut's filter: candidate (h, w) is no repeat of a previous mask, its mask is no speck.

    ``mask`` is the candidate less the patches already dropped from the graph.
    """
    if any(mask_iou(candidate, earlier) > config.max_overlap for earlier in previous):
        return False
    return mask.mean() > config.min_area


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two bool masks (0 when both are empty)."""
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0
