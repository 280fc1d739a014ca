"""PHI-S statistics (FeatSharp's feature normaliser), estimated from a stream of features.

With the feature covariance cov = V diag(lam) V^T (float64, population estimator, lam
clamped >= 0) and a Hadamard matrix H of size D with rows scaled to unit norm:

    alpha = 1 / sqrt(mean(lam));  rotation = H V^T;  inv_rotation = V H^T
    normalize(x) = alpha * rotation (x - mean)

PHI-S is an isotropic-variance rotation, not a whitening: cov(normalize(x)) =
alpha^2 H diag(lam) H^T, whose diagonal is exactly 1 (every |H_ij| = 1 / sqrt(D)), and
rotating back, H^T normalize(x) / alpha = V^T (x - mean), is decorrelated with variances lam.
"""
from typing import Dict, Iterable

import torch

from anyup_dense.training.distributed import DistInfo, all_reduce_sum_


def _is_prime(n: int) -> bool:
    return n >= 2 and all(n % k for k in range(2, int(n ** 0.5) + 1))


def _jacobsthal(q: int) -> torch.Tensor:
    """Q_ij = legendre(j - i mod q), [q, q] float64."""
    squares = {(k * k) % q for k in range(1, q)}
    chi = torch.tensor([0.0] + [1.0 if k in squares else -1.0 for k in range(1, q)], dtype=torch.float64)
    idx = torch.arange(q)
    return chi[(idx[None, :] - idx[:, None]) % q]


def _paley(m: int) -> torch.Tensor:
    """A Hadamard matrix of order m from Paley's constructions (prime q), or None."""
    q = m - 1
    if _is_prime(q) and q % 4 == 3:  # Paley I
        s = torch.zeros(m, m, dtype=torch.float64)
        s[0, 1:], s[1:, 0], s[1:, 1:] = 1.0, -1.0, _jacobsthal(q)
        return s + torch.eye(m, dtype=torch.float64)
    q = m // 2 - 1
    if m % 2 == 0 and _is_prime(q) and q % 4 == 1:  # Paley II
        s = torch.zeros(q + 1, q + 1, dtype=torch.float64)
        s[0, 1:], s[1:, 0], s[1:, 1:] = 1.0, 1.0, _jacobsthal(q)
        zero_block = torch.tensor([[1.0, -1.0], [-1.0, -1.0]], dtype=torch.float64)
        one_block = torch.tensor([[1.0, 1.0], [1.0, -1.0]], dtype=torch.float64)
        return torch.kron(s, one_block) + torch.kron((s == 0).double(), zero_block)
    return None


def hadamard(n: int) -> torch.Tensor:
    """A Hadamard matrix of order n (entries +-1, H H^T = n I), float64: Sylvester doubling of
    1 or of a Paley matrix. Raises ``ValueError`` when no such construction exists for n."""
    base, doublings = n, 0
    while True:
        core = torch.ones(1, 1, dtype=torch.float64) if base == 1 else _paley(base)
        if core is not None:
            for _ in range(doublings):
                core = torch.cat([torch.cat([core, core], 1), torch.cat([core, -core], 1)], 0)
            return core
        if base % 2:
            raise ValueError(f"no Hadamard matrix construction (Sylvester x Paley) for dimension {n}")
        base, doublings = base // 2, doublings + 1


class FeatureMoments:
    """Streaming float64 count, sum and sum of outer products of D-dim feature vectors."""

    def __init__(self, dim: int):
        self.count = torch.zeros((), dtype=torch.float64)
        self.total = torch.zeros(dim, dtype=torch.float64)
        self.outer = torch.zeros(dim, dim, dtype=torch.float64)

    def update(self, features: torch.Tensor) -> None:
        """features [B, D, h, w] (every pixel is one sample)."""
        x = features.detach().permute(0, 2, 3, 1).reshape(-1, features.shape[1]).double().cpu()
        self.count += x.shape[0]
        self.total += x.sum(0)
        self.outer += x.T @ x

    def all_reduce(self, info: DistInfo) -> None:
        for tensor in (self.count, self.total, self.outer):
            all_reduce_sum_(tensor, info)

    def mean_and_covariance(self):
        mean = self.total / self.count
        return mean, self.outer / self.count - torch.outer(mean, mean)


def phis_from_moments(mean: torch.Tensor, covariance: torch.Tensor) -> Dict[str, torch.Tensor]:
    """``mean`` [D], ``alpha`` [], ``rotation`` [D, D], ``inv_rotation`` [D, D] (float64)."""
    eigenvalues, eigenvectors = torch.linalg.eigh(covariance)
    eigenvalues = eigenvalues.clamp(min=0)
    dim = mean.shape[0]
    h = hadamard(dim) / dim ** 0.5
    return {"mean": mean, "alpha": 1 / eigenvalues.mean().sqrt(), "rotation": h @ eigenvectors.T,
            "inv_rotation": eigenvectors @ h.T}


def estimate_phis(feature_batches: Iterable[torch.Tensor], dim: int, info: DistInfo) -> Dict[str, torch.Tensor]:
    """PHI-S parameters of all processes' ``feature_batches`` ([B, D, h, w] each) together."""
    moments = FeatureMoments(dim)
    for features in feature_batches:
        moments.update(features)
    moments.all_reduce(info)
    if moments.count.item() < 2:
        raise ValueError("PHI-S estimation needs at least two feature vectors")
    return phis_from_moments(*moments.mean_and_covariance())
