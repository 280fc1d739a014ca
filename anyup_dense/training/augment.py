"""AnyUp's photometric augmentation chain (spec anyup.md §8.1), drawn from an explicit
generator so that a step's augmentations are reproducible.

Per image, in order (probabilities p become p ** (1 / strength)):

| op | probability |
|---|---|
| colour jitter (0.2, 0.2, 0.3, 0.05) then photometric distortion (each part p = 0.5) | 0.5 |
| grayscale (3 channels kept) | 0.1 |
| Gaussian blur, kernel 5, sigma ~ U(0.3, 1.5) | 0.35 |
| JPEG, quality 95 / 80 / 60 / 40 with probabilities .25 / .35 / .25 / .15 | always |
| autocontrast / equalize / sharpness 1.5 / posterize 5 bits | 0.2 / 0.15 / 0.2 / 0.1 |
| solarize (threshold 0.9 of the range) / invert | 0.05 / 0.02 |
| Gaussian noise, sigma 0.03, clipped to [0, 1] | 0.6 |
"""
from typing import Callable, List

import torch
import torchvision.transforms.v2.functional as TF

JPEG_QUALITIES = (95, 80, 60, 40)
JPEG_PROBABILITIES = (0.25, 0.35, 0.25, 0.15)


class Draw:
    """Random draws from one generator: coins, uniforms, permutations."""

    def __init__(self, generator: torch.Generator, strength: float = 1.0):
        if strength <= 0:
            raise ValueError(f"augmentation strength must be > 0, got {strength}")
        self.generator = generator
        self.strength = strength

    def coin(self, probability: float, scaled: bool = True) -> bool:
        p = probability ** (1.0 / self.strength) if scaled else probability
        return bool(torch.rand((), generator=self.generator) < p)

    def uniform(self, low: float, high: float) -> float:
        return low + (high - low) * float(torch.rand((), generator=self.generator))

    def permutation(self, n: int) -> List[int]:
        return torch.randperm(n, generator=self.generator).tolist()

    def choice(self, probabilities) -> int:
        return int(torch.multinomial(torch.tensor(probabilities), 1, generator=self.generator))


def color_jitter(x: torch.Tensor, draw: Draw) -> torch.Tensor:
    """Brightness/contrast U(0.8, 1.2), saturation U(0.7, 1.3), hue U(-0.05, 0.05), in random order."""
    ops: List[Callable[[torch.Tensor], torch.Tensor]] = [
        lambda y: TF.adjust_brightness(y, draw.uniform(0.8, 1.2)),
        lambda y: TF.adjust_contrast(y, draw.uniform(0.8, 1.2)),
        lambda y: TF.adjust_saturation(y, draw.uniform(0.7, 1.3)),
        lambda y: TF.adjust_hue(y, draw.uniform(-0.05, 0.05)),
    ]
    for index in draw.permutation(len(ops)):
        x = ops[index](x)
    return x


def photometric_distort(x: torch.Tensor, draw: Draw, p: float = 0.5) -> torch.Tensor:
    """Each with probability p: brightness U(0.875, 1.125); contrast U(0.5, 1.5) (before or
    after saturation/hue, by a fair coin); saturation U(0.5, 1.5); hue U(-0.05, 0.05);
    finally a random channel permutation."""
    contrast_first = draw.coin(0.5, scaled=False)

    def contrast(y):
        return TF.adjust_contrast(y, draw.uniform(0.5, 1.5)) if draw.coin(p, scaled=False) else y

    if draw.coin(p, scaled=False):
        x = TF.adjust_brightness(x, draw.uniform(0.875, 1.125))
    if contrast_first:
        x = contrast(x)
    if draw.coin(p, scaled=False):
        x = TF.adjust_saturation(x, draw.uniform(0.5, 1.5))
    if draw.coin(p, scaled=False):
        x = TF.adjust_hue(x, draw.uniform(-0.05, 0.05))
    if not contrast_first:
        x = contrast(x)
    if draw.coin(p, scaled=False):
        x = x[draw.permutation(x.shape[0])]
    return x


def augment_image(image: torch.Tensor, draw: Draw) -> torch.Tensor:
    """One float [3, H, W] image in [0, 1] -> its augmented copy (same shape, in [0, 1])."""
    x = image.mul(255).round().clamp(0, 255).to(torch.uint8)
    if draw.coin(0.5):
        x = photometric_distort(color_jitter(x, draw), draw)
    if draw.coin(0.1):
        x = TF.rgb_to_grayscale(x, num_output_channels=3)
    if draw.coin(0.35):
        sigma = draw.uniform(0.3, 1.5)
        x = TF.gaussian_blur(x, [5, 5], [sigma, sigma])
    x = TF.jpeg(x, JPEG_QUALITIES[draw.choice(JPEG_PROBABILITIES)])
    for probability, op in ((0.2, TF.autocontrast), (0.15, TF.equalize),
                            (0.2, lambda y: TF.adjust_sharpness(y, 1.5)), (0.1, lambda y: TF.posterize(y, 5)),
                            (0.05, lambda y: TF.solarize(y, 0.9 * 255)), (0.02, TF.invert)):
        if draw.coin(probability):
            x = op(x)
    out = x.float().div(255)
    if draw.coin(0.6):
        noise = torch.randn(out.shape, generator=draw.generator)
        out = (out + 0.03 * noise).clamp(0, 1)
    return out


def augment_batch(images: torch.Tensor, generator: torch.Generator, strength: float = 1.0) -> torch.Tensor:
    """float [B, 3, H, W] in [0, 1] (any device) -> augmented copy, each image drawn independently."""
    draw = Draw(generator, strength)
    out = torch.stack([augment_image(img, draw) for img in images.detach().cpu()])
    return out.to(images.device)
