"""Learned attention downsamplers: HR features -> the backbone's LR grid, for multi-view
reconstruction losses (FeatUp, FeatSharp).

Both blur the HR map (5x5 Gaussian, sigma 1, reflect border), cut it into windows, score
every tap of every window, randomly drop 20% of the logits during training (multiplied by
0; not in eval mode), softmax over the taps and return the weighted sum of the blurred features:

* :class:`FeatUpDownsampler`: windows of k x k (k = patch size) at stride k; a tap's logit is
  ``Linear(C -> 1)(Dropout(0.2)(feature))`` then ``* w + b`` with learned per-tap ``w``, ``b``
  [k, k] (init 1 and 0).
* :class:`FeatSharpDownsampler`: 9 x 9 windows at stride u (padding 4); the 81 logits of a
  window come from one ``Conv2d(D -> 81, 9, stride u)`` (init: weights 0, bias 1, so the
  first softmax is uniform) plus a learned per-tap bias.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF

KEEP_PROBABILITY = 0.8


def blur(x: torch.Tensor) -> torch.Tensor:
    """The 5x5, sigma 1 Gaussian blur with reflect border (torchvision's); [B, C, H, W] -> same shape."""
    return TF.gaussian_blur(x, [5, 5], [1.0, 1.0])


def drop_logits(logits: torch.Tensor) -> torch.Tensor:
    """Zero each logit with probability 1 - KEEP_PROBABILITY (global RNG)."""
    return logits * (torch.rand_like(logits) < KEEP_PROBABILITY)


def attention_pool(windows: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """windows [B, C, T, L], logits [B, T, L] -> softmax-over-T weighted sum [B, C, L]."""
    return torch.einsum("bctl,btl->bcl", windows, logits.softmax(dim=1))


class FeatUpDownsampler(nn.Module):
    """[B, C, H, W] -> [B, C, final, final], windows ``kernel`` x ``kernel`` at stride
    (H - kernel) // (final - 1). Keys: ``attention_net.1.weight`` [1, C], ``.bias`` [1],
    ``w``, ``b`` [kernel, kernel]."""

    def __init__(self, dim: int, kernel: int, final_size: int):
        super().__init__()
        self.kernel = kernel
        self.final_size = final_size
        self.attention_net = nn.Sequential(nn.Dropout(0.2), nn.Linear(dim, 1))
        self.w = nn.Parameter(torch.ones(kernel, kernel))
        self.b = nn.Parameter(torch.zeros(kernel, kernel))

    def forward(self, hr: torch.Tensor) -> torch.Tensor:
        b, c, h, w = hr.shape
        stride = (h - self.kernel) // max(self.final_size - 1, 1)
        windows = F.unfold(blur(hr), self.kernel, stride=stride).view(b, c, self.kernel ** 2, -1)
        logits = self.attention_net(windows.permute(0, 2, 3, 1)).squeeze(-1)  # [B, T, L]
        if self.training:
            logits = drop_logits(logits)
        logits = logits * self.w.reshape(1, -1, 1) + self.b.reshape(1, -1, 1)
        pooled = attention_pool(windows, logits)
        return pooled.view(b, c, self.final_size, -1)


class FeatSharpDownsampler(nn.Module):
    """[B, D, u*L, u*L] -> [B, D, L, L]. Keys: ``logits.weight`` [81, D, 9, 9], ``logits.bias``
    [81], ``tap_bias`` [81]."""

    def __init__(self, dim: int, factor: int, kernel: int = 9):
        super().__init__()
        self.factor = factor
        self.kernel = kernel
        self.logits = nn.Conv2d(dim, kernel * kernel, kernel, stride=factor, padding=kernel // 2)
        nn.init.zeros_(self.logits.weight)
        nn.init.ones_(self.logits.bias)
        self.tap_bias = nn.Parameter(torch.zeros(kernel * kernel))

    def forward(self, hr: torch.Tensor) -> torch.Tensor:
        b, d = hr.shape[:2]
        blurred = blur(hr)
        logits = self.logits(blurred)
        out_hw = logits.shape[-2:]
        logits = logits.flatten(2)
        if self.training:
            logits = drop_logits(logits)
        logits = logits + self.tap_bias[None, :, None]
        windows = F.unfold(blurred, self.kernel, padding=self.kernel // 2, stride=self.factor)
        pooled = attention_pool(windows.view(b, d, self.kernel ** 2, -1), logits)
        return pooled.view(b, d, *out_hw)
