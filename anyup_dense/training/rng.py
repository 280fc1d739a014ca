"""Step-addressed randomness: every random draw of a training step is a function of
``(seed, rank, step)``.

Resuming at step ``s`` therefore replays exactly the crops, augmentations, dropout masks
and data order an uninterrupted run would have used, without saving generator states and
independently of the number of data-loader workers.
"""
import hashlib

import torch


def derive_seed(*parts: int) -> int:
    """A 63-bit seed from integers (stable across processes and Python versions)."""
    digest = hashlib.sha256("/".join(str(int(p)) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def step_generator(seed: int, rank: int, step: int) -> torch.Generator:
    """Seed torch's global RNG (dropout inside modules) and return a CPU generator for the
    step's explicit draws (crops, augmentations, jitters)."""
    torch.manual_seed(derive_seed(seed, rank, step, 0))
    return torch.Generator().manual_seed(derive_seed(seed, rank, step, 1))
