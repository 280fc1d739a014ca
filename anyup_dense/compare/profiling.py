"""Wall time and peak tensor memory of one call, on any device.

Peak memory is the high-water mark of the bytes held by tensors *allocated during the call*
(inputs, parameters and caches that already existed are not counted), tracked at the ATen
dispatch level so that it means the same on CPU and CUDA (``torch.cuda.max_memory_allocated``
has no CPU counterpart). Views share their base's storage and are counted once.
"""
import time
import weakref
from typing import Callable, Dict, Tuple

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten


class PeakTensorMemory(TorchDispatchMode):
    """``with PeakTensorMemory() as m: ...`` then ``m.peak_bytes``."""

    def __init__(self):
        super().__init__()
        self.live_bytes = 0
        self.peak_bytes = 0
        self._refs: Dict[Tuple[torch.device, int], list] = {}  # storage -> [nbytes, tensor count]

    def _release(self, key) -> None:
        entry = self._refs[key]
        entry[1] -= 1
        if entry[1] == 0:
            self.live_bytes -= entry[0]
            del self._refs[key]

    def _track(self, tensor: torch.Tensor) -> None:
        storage = tensor.untyped_storage()
        key = (tensor.device, storage.data_ptr())
        if key[1] == 0:  # empty tensors own no memory
            return
        if key not in self._refs:
            self._refs[key] = [storage.nbytes(), 0]
            self.live_bytes += storage.nbytes()
            self.peak_bytes = max(self.peak_bytes, self.live_bytes)
        self._refs[key][1] += 1
        weakref.finalize(tensor, self._release, key)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for item in tree_flatten(out)[0]:
            if isinstance(item, torch.Tensor) and not item.is_meta:
                self._track(item)
        return out


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(fn: Callable[[], torch.Tensor], device: torch.device) -> Tuple[torch.Tensor, float, int]:
    """Run ``fn`` twice under ``torch.inference_mode``: once timed, once with
    :class:`PeakTensorMemory` (which slows it). Returns (output, seconds, peak bytes)."""
    with torch.inference_mode():
        _synchronize(device)
        start = time.perf_counter()
        out = fn()
        _synchronize(device)
        seconds = time.perf_counter() - start
        del out
        with PeakTensorMemory() as memory:
            out = fn()
    return out, seconds, memory.peak_bytes
