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
from functools import lru_cache
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from torch import Tensor

from selfsight.errors import UserError
from selfsight.segment.overlap import mask_iou

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


@lru_cache(maxsize=8)
def grid_proximity(grid: tuple[int, int], sigma: float) -> Tensor:
    """Spatial weights of Shi & Malik's image-segmentation graph (2000):
    exp(-d^2 / (2 sigma^2)) for every pair of cells of an (h, w) grid, d their distance in
    cells. (h*w, h*w) float32 on the CPU; cached because a grid is cut many times."""
    rows, cols = np.indices(grid).reshape(2, -1).astype(np.float64)
    squared = (rows[:, None] - rows[None]) ** 2 + (cols[:, None] - cols[None]) ** 2
    return torch.from_numpy(np.exp(-squared / (2 * sigma ** 2))).float()


def second_eigenvector(w: Tensor, method: EigenMethod = "auto") -> Tensor:
    """Second-smallest generalised eigenvector x of the normalized cut, (D - W) x = lambda D x.

    w (B, N, N) symmetric with positive degrees -> x (B, N) in float64, on w's device, with
    arbitrary sign and scale. Solved through the symmetric normalised Laplacian
    ``L = I - D^-1/2 W D^-1/2`` (Shi & Malik, 2000): if L y = lambda y then x = D^-1/2 y.
    ``method``: "dense" (batched ``torch.linalg.eigh``), "lobpcg" (``torch.lobpcg`` per image),
    or "auto" (dense up to ``DENSE_MAX_PATCHES`` patches).
    """
    if method not in ("auto", "dense", "lobpcg"):
        raise UserError(f"unknown eigen method {method!r}; valid: 'auto', 'dense', 'lobpcg'")
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


def bipartition(vector: Tensor, grid: tuple[int, int], available: np.ndarray | None = None
                ) -> tuple[np.ndarray, int]:
    """Salient part of one NCut vector (N,) on an (h, w) patch grid -> (seed component, seed).

    As in MaskCut: split at the vector's mean; the side above the mean is the foreground unless
    3 or more of the 4 grid corners are foreground (objects rarely fill the corners), or else
    unless the patch of largest |vector| lies outside it; either case flips the vector. The seed
    is the argmax of the (possibly flipped) vector, and only the 4-connected foreground component
    holding the seed is kept. Returns an (h, w) bool array and the flat seed index.

    ``available`` (h, w) bool: the patches still in play. Patches found in earlier rounds take
    no part in the mean, the corners, the seed or the component, so a later cut cannot return
    them again, nor bridge two objects through them.
    """
    values = vector.detach().double().cpu().numpy().reshape(grid)
    live = np.ones(grid, dtype=bool) if available is None else np.asarray(available, dtype=bool)
    if not live.any():
        return np.zeros(grid, dtype=bool), 0
    foreground = (values > values[live].mean()) & live
    corners = [(0, 0), (0, -1), (-1, 0), (-1, -1)]
    peak = np.unravel_index(np.where(live, np.abs(values), -np.inf).argmax(), grid)
    if sum(foreground[c] for c in corners) >= 3 or not foreground[peak]:
        values, foreground = -values, ~foreground & live
    seed = int(np.where(live, values, -np.inf).argmax())
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
    exclude_found: with False (CutLER), found patches stay in the graph with zeroed features and
      a later cut may pick them up again, with a new object attached: the overlap rule then
      rejects both, and a cut that finds only them is the implicit stop. With True they take no
      part in the bipartition (``available``): more objects per image, but no implicit stop,
      so once the objects are found the remaining cuts return pieces of background.
    split_ncut: split a candidate again while its own graph cuts at a normalized-cut value at
      most this (``split_recursively``): separates touching instances; None turns it off.
    split_sigma: with split_ncut, the split's graph also weighs each edge by the patches'
      proximity (``grid_proximity``, Shi & Malik's spatial term) at this scale, a fraction of
      the grid's longer side: two touching objects then cut apart at their narrow junction even
      where their features agree (same-category twins). None: the feature graph alone.
    center: subtract each image's mean patch feature before the cosine affinity. Features with
      a large component shared by every patch (a ViT's keys: 88% of patch pairs of an untrained
      ViT are above tau = 0.15) otherwise make the graph almost complete.
    max_edges: reject a mask touching this many of the image's four edges or more (2: the blobs
      of background the cut leaves in image corners); None: no border rule (CutLER).
    """

    n_masks: int = 3
    tau: float = 0.15
    eps: float = 1e-5
    max_overlap: float = 0.5
    min_area: float = 0.01
    eigen_method: EigenMethod = "auto"
    exclude_found: bool = False  # found patches leave the bipartition too (not in CutLER)
    split_ncut: float | None = None  # recursive splitting of a candidate (None: MaskCut as is)
    split_sigma: float | None = None  # spatial scale of the split's graph (fraction of the grid)
    center: bool = False  # per-image mean feature removed before the affinity (not in CutLER)
    max_edges: int | None = None  # border rule: masks touching this many image edges dropped


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
    if config.center:
        patches = patches - patches.mean(dim=1, keepdim=True)
    if config.split_sigma is not None and (config.split_sigma <= 0 or config.split_ncut is None):
        raise UserError(f"split_sigma={config.split_sigma}: needs split_ncut set and a "
                        "positive scale (a fraction of the grid side, e.g. 0.1)")
    proximity = None
    if config.split_sigma is not None:
        proximity = grid_proximity(grid, config.split_sigma * max(grid)).to(patches.device)
    dropped = np.zeros((batch, height, width), dtype=bool)  # patches removed from each graph
    found: list[list[np.ndarray]] = [[] for _ in range(batch)]
    for _ in range(config.n_masks):
        keep = torch.from_numpy(~dropped.reshape(batch, -1)).to(patches.device)  # (B, N)
        w = affinity(patches * keep[..., None], config.tau, config.eps)  # (B, N, N)
        vectors = second_eigenvector(w, config.eigen_method)  # (B, N)
        for image, vector in enumerate(vectors):
            live = ~dropped[image] if config.exclude_found else None
            candidate, seed = bipartition(vector, grid, live)
            if config.split_ncut is not None:
                candidate = split_recursively(w[image], candidate, seed, config.split_ncut,
                                              proximity)
            mask = candidate & ~dropped[image]
            if keep_candidate(candidate, mask, found[image], config):
                found[image].append(mask)
            dropped[image] |= candidate
    return [np.stack(masks) if masks else np.zeros((0, *grid), dtype=bool) for masks in found]


def ncut_cost(w: Tensor, part: Tensor, rest: Tensor) -> float:
    """Normalized-cut value (Shi & Malik, 2000) of the split (part, rest) of a graph's nodes:
    cut/vol(part) + cut/vol(rest); near 0 for two unlinked groups, about 1 for halves of a
    clique (on the binary graph, one object's patches)."""
    cut = w[part][:, rest].sum()
    vol_part, vol_rest = w[part].sum(), w[rest].sum()
    return float(cut / vol_part + cut / vol_rest) if vol_part > 0 and vol_rest > 0 else 1.0


def split_recursively(w: Tensor, candidate: np.ndarray, seed: int, max_cost: float,
                      proximity: Tensor | None = None) -> np.ndarray:
    """Recursive two-way normalized cut (Shi & Malik, 2000, sec. 3.1) inside a candidate: while
    the candidate's own graph splits at a cost <= ``max_cost``, keep the side holding the seed
    (its 4-connected component). One bipartition of the whole image puts touching objects on the
    same side, and their union is connected; this separates them when their features differ.
    ``proximity`` (N, N), optional: spatial weights multiplied into the candidate's graph, so
    that objects with equal features part at their junction (``MaskCutConfig.split_sigma``)."""
    grid = candidate.shape
    while candidate.sum() >= 4:
        nodes = torch.from_numpy(np.flatnonzero(candidate)).to(w.device)
        sub = w[nodes][:, nodes]  # the candidate's own graph
        if proximity is not None:
            sub = sub * proximity[nodes][:, nodes]
        vector = second_eigenvector(sub[None])[0]
        side = (vector > vector.mean()).cpu().numpy()
        where = np.flatnonzero(candidate)
        seed_side = side[np.searchsorted(where, seed)]
        part = side == seed_side
        if part.all() or ncut_cost(sub, torch.from_numpy(part).to(w.device),
                                   torch.from_numpy(~part).to(w.device)) > max_cost:
            break
        kept = np.zeros(candidate.size, dtype=bool)
        kept[where[part]] = True
        labels, _ = ndimage.label(kept.reshape(grid), structure=FOUR_CONNECTED)
        candidate = labels == labels.flat[seed]
    return candidate


def keep_candidate(candidate: np.ndarray, mask: np.ndarray, previous: list[np.ndarray],
                   config: MaskCutConfig) -> bool:
    """MaskCut's filter: candidate (h, w) is no repeat of a previous mask, its mask is no speck
    (and, with ``max_edges``, not a piece of the image's border).

    ``mask`` is the candidate less the patches already dropped from the graph.
    """
    if previous and mask_iou(candidate[None], np.stack(previous)).max() > config.max_overlap:
        return False
    if config.max_edges is not None and edges_touched(mask) >= config.max_edges:
        return False
    return mask.mean() > config.min_area


def edges_touched(mask: np.ndarray) -> int:
    """How many of the four sides of the (h, w) grid the mask reaches."""
    return int(mask[0].any()) + int(mask[-1].any()) + int(mask[:, 0].any()) + int(mask[:, -1].any())
