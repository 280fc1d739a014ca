"""Progress bar (tqdm: loss, throughput, lr) and TensorBoard scalars, on rank 0 only."""
import os
import time
from typing import Dict, Optional

from tqdm import tqdm


class Monitor:
    """``update(step, scalars, images)`` after each step; ``close()`` at the end.

    ``scalars`` are floats already averaged over processes; ``images`` is the number of
    images the step consumed over all processes (for the images/s figure).
    """

    def __init__(self, enabled: bool, log_dir: str, start_step: int, total_steps: int):
        self.enabled = enabled
        self.bar: Optional[tqdm] = None
        self.writer = None
        if enabled:
            from torch.utils.tensorboard import SummaryWriter

            self.bar = tqdm(total=total_steps, initial=start_step, desc="train", dynamic_ncols=True)
            self.writer = SummaryWriter(os.path.join(log_dir, "tensorboard"))
        self._last_time = time.perf_counter()
        self._images = 0

    def update(self, step: int, scalars: Optional[Dict[str, float]], images: int) -> None:
        if not self.enabled:
            return
        self.bar.update(1)
        self._images += images
        if scalars is None:
            return
        now = time.perf_counter()
        throughput = self._images / max(now - self._last_time, 1e-9)
        self._last_time, self._images = now, 0
        for key, value in scalars.items():
            self.writer.add_scalar(f"train/{key}", value, step)
        self.writer.add_scalar("train/images_per_s", throughput, step)
        self.bar.set_postfix(loss=f"{scalars['loss']:.4f}", img_s=f"{throughput:.1f}", lr=f"{scalars['lr']:.2e}")

    def close(self) -> None:
        if self.enabled:
            self.writer.close()
            self.bar.close()
