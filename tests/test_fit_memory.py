"""Memory bound of a FeatUp implicit fit step (issue 15): at most two full-resolution maps
[1,P,R,R] (U's output and its gradient) are alive at once; the rest of a step is chunk-sized.

The process-peak check at 448 (under 1.5 GiB) is ``tools/fit_memory.py``: minutes of CPU, so not here.
"""
import weakref

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from anyup_dense.upsamplers.featup_implicit import FeatUpImplicit


class LargeStorages(TorchDispatchMode):
    """Records in ``peak`` the most storages of at least ``min_bytes`` that ops returned and that were
    alive at once (each storage counted from its first appearance until it is freed)."""

    def __init__(self, min_bytes: int):
        super().__init__()
        self.min_bytes, self.peak = min_bytes, 0
        self.alive = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                storage = t.untyped_storage()
                key = storage.data_ptr()
                if storage.nbytes() >= self.min_bytes and key not in self.alive:
                    self.alive.add(key)
                    self.peak = max(self.peak, len(self.alive))
                    weakref.finalize(storage, self.alive.discard, key)
        return out


def test_fit_step_holds_at_most_two_full_maps():
    """Before: U's output, the [1,P+1,R,R] stack of |U| and U made for the views and that stack's
    gradient were alive together (3 full maps); now the views stack only their slab of rows, so a
    step holds U's output and its gradient (2), and frees the output before U is re-evaluated."""
    r, p, f, k = 48, 8, 4, 12
    proj = torch.randn(16, 3, 1, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)

    def featurizer(x):
        return F.conv2d(F.adaptive_avg_pool2d(x, f), proj)

    up = FeatUpImplicit(model_resolution=r, kernel_size=k, steps=1, n_images=4, pca_batch=2, proj_dim=p, n_freqs=2,
                        max_pad=4, inner_batch=2, chunk_size=2000, featurize_batch=2)
    image = torch.randn(1, 3, r, r, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    up.fit(image, featurizer)  # warm-up outside the mode (lazy imports)
    with LargeStorages(min_bytes=p * r * r * image.element_size()) as mode:
        up.fit(image, featurizer)
    assert mode.peak == 2
