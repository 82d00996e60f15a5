"""Image corruptions in torch (CIFAR-10-C style, Hendrycks & Dietterich 2019), seeded, severities 1-5.

Each corruption takes images of shape (N, C, H, W) with values in [0, 1] and returns the
same shape in [0, 1]. Severity constants are those of the CIFAR-10-C generation code
(make_cifar_c.py). Computed on the clean test tensors, so no download and the same
numbers for the same seed. Seven of the 19 are not implemented (they need ImageMagick,
frost image files or per-pixel loops): glass_blur, motion_blur, fog, frost, snow,
spatter, elastic_transform (docs/definitions.md).
"""

from __future__ import annotations

import math
import warnings
from typing import Callable

import torch
from torch.nn import functional as F


def _gaussian_noise(x, s, gen):
    c = [0.04, 0.06, .08, .09, .10][s - 1]
    return x + c * torch.randn(x.shape, generator=gen)


def _shot_noise(x, s, gen):
    c = [500, 250, 100, 75, 50][s - 1]
    return torch.poisson(x * c, generator=gen) / c


def _impulse_noise(x, s, gen):
    c = [.01, .02, .03, .05, .07][s - 1]  # salt-and-pepper: that share of values set to 0 or 1
    hit = torch.rand(x.shape, generator=gen) < c
    salt = torch.rand(x.shape, generator=gen) < 0.5
    return torch.where(hit, salt.to(x.dtype), x)


def _speckle_noise(x, s, gen):
    c = [.06, .1, .12, .16, .2][s - 1]
    return x + x * c * torch.randn(x.shape, generator=gen)


def _depthwise(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Convolve every channel with a 2-D kernel, reflecting at the borders (as cv2 and skimage do)."""
    kh, kw = kernel.shape
    ph, pw = kh // 2, kw // 2
    n, c, h, w = x.shape
    if ph >= h or pw >= w:  # reflect padding needs the image to be larger than the pad
        mode = "replicate"
    else:
        mode = "reflect"
    padded = F.pad(x.reshape(n * c, 1, h, w), (pw, pw, ph, ph), mode=mode)
    return F.conv2d(padded, kernel.to(x)[None, None]).reshape(n, c, h, w)


def _gaussian_kernel(sigma: float, radius: int | None = None) -> torch.Tensor:
    radius = radius if radius is not None else max(1, math.ceil(4 * sigma))  # skimage truncates at 4 sigma
    t = torch.arange(-radius, radius + 1, dtype=torch.float64)
    g = torch.exp(-t ** 2 / (2 * sigma ** 2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).float()


def _gaussian_blur(x, s, gen):
    return _depthwise(x, _gaussian_kernel([.4, .6, 0.7, .8, 1][s - 1]))


def _defocus_blur(x, s, gen):
    radius, alias = [(0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)][s - 1]
    t = torch.arange(-8, 9, dtype=torch.float64)
    disk = ((t[:, None] ** 2 + t[None, :] ** 2) <= radius ** 2).double()
    disk = disk / disk.sum()
    smooth = F.conv2d(F.pad(disk[None, None], (1, 1, 1, 1)), _gaussian_kernel(alias, 1).double()[None, None])[0, 0]
    keep = smooth.abs().sum(0) > 0  # crop the all-zero border of the 17x17 support
    return _depthwise(x, smooth[keep][:, keep].float())


def _contrast(x, s, gen):
    c = [.75, .5, .4, .3, 0.15][s - 1]
    means = x.mean(dim=(2, 3), keepdim=True)
    return (x - means) * c + means


def _rgb_to_hsv(x: torch.Tensor) -> torch.Tensor:
    r, g, b = x.unbind(1)
    v, _ = x.max(1)
    mn, _ = x.min(1)
    delta = v - mn
    s = torch.where(v > 0, delta / v.clamp_min(1e-12), torch.zeros_like(v))
    safe = delta.clamp_min(1e-12)
    h = torch.where(v == r, (g - b) / safe, torch.where(v == g, 2 + (b - r) / safe, 4 + (r - g) / safe))
    h = torch.where(delta > 0, (h / 6) % 1.0, torch.zeros_like(h))
    return torch.stack([h, s, v], 1)


def _hsv_to_rgb(x: torch.Tensor) -> torch.Tensor:
    h, s, v = x.unbind(1)
    i = torch.floor(h * 6)
    f = h * 6 - i
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    i = i.long() % 6
    choices = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)]
    out = [torch.zeros_like(v) for _ in range(3)]
    for k, rgb in enumerate(choices):
        sel = i == k
        for ch in range(3):
            out[ch] = torch.where(sel, rgb[ch], out[ch])
    return torch.stack(out, 1)


def _brightness(x, s, gen):
    c = [.05, .1, .15, .2, .3][s - 1]
    if x.shape[1] != 3:
        return x + c  # the value channel of a gray image is the image
    hsv = _rgb_to_hsv(x)
    hsv[:, 2] = (hsv[:, 2] + c).clamp(0, 1)
    return _hsv_to_rgb(hsv)


def _saturate(x, s, gen):
    scale, shift = [(0.3, 0), (0.1, 0), (1.5, 0), (2, 0.1), (2.5, 0.2)][s - 1]
    hsv = _rgb_to_hsv(x)
    hsv[:, 1] = (hsv[:, 1] * scale + shift).clamp(0, 1)
    return _hsv_to_rgb(hsv)


def _pixelate(x, s, gen):
    c = [0.95, 0.9, 0.85, 0.75, 0.65][s - 1]
    h, w = x.shape[-2:]
    small = F.interpolate(x, size=(max(1, int(h * c)), max(1, int(w * c))), mode="area")  # PIL's box filter
    return F.interpolate(small, size=(h, w), mode="area")


def _jpeg_compression(x, s, gen):
    quality = [80, 65, 58, 50, 40][s - 1]
    as_bytes = (x * 255).round().clamp(0, 255).to(torch.uint8)
    with warnings.catch_warnings():  # torchvision 0.29 points to torchcodec; its libjpeg codec still works
        warnings.simplefilter("ignore", DeprecationWarning)
        from torchvision.io import decode_jpeg, encode_jpeg

        return torch.stack(decode_jpeg(encode_jpeg(list(as_bytes), quality=quality))).float() / 255


def _zoom_blur(x, s, gen):
    top = [1.06, 1.11, 1.16, 1.21, 1.26][s - 1]
    zooms = torch.arange(1, top - 1e-9, 0.01).tolist()
    h, w = x.shape[-2:]
    out = x.clone()
    for z in zooms:
        zh, zw = math.ceil(h * z), math.ceil(w * z)
        big = F.interpolate(x, size=(zh, zw), mode="bilinear", align_corners=False)
        top_, left = (zh - h) // 2, (zw - w) // 2
        out += big[..., top_:top_ + h, left:left + w]
    return out / (len(zooms) + 1)


Corruption = Callable[[torch.Tensor, int, torch.Generator], torch.Tensor]
CORRUPTIONS: dict[str, Corruption] = {
    "gaussian_noise": _gaussian_noise,
    "shot_noise": _shot_noise,
    "impulse_noise": _impulse_noise,
    "speckle_noise": _speckle_noise,
    "gaussian_blur": _gaussian_blur,
    "defocus_blur": _defocus_blur,
    "zoom_blur": _zoom_blur,
    "contrast": _contrast,
    "brightness": _brightness,
    "saturate": _saturate,
    "pixelate": _pixelate,
    "jpeg_compression": _jpeg_compression,
}
NOT_IMPLEMENTED = ("glass_blur", "motion_blur", "fog", "frost", "snow", "spatter", "elastic_transform")
COLOR_ONLY = ("saturate",)


def corrupt(images: torch.Tensor, name: str, severity: int, seed: int = 0) -> torch.Tensor:
    """``images`` (N, C, H, W) in [0, 1] with corruption ``name`` at ``severity`` 1-5; the same for the same seed."""
    if name not in CORRUPTIONS:
        extra = " (not implemented in gstbench)" if name in NOT_IMPLEMENTED else ""
        raise ValueError(f"unknown corruption {name!r}{extra}; known: {', '.join(CORRUPTIONS)}")
    if not 1 <= severity <= 5:
        raise ValueError(f"severity {severity} is not in 1-5")
    if images.dim() != 4:
        raise ValueError(f"corruptions need images of shape (N, C, H, W), got {tuple(images.shape)}")
    if name in COLOR_ONLY and images.shape[1] != 3:
        raise ValueError(f"{name} needs RGB images, got {images.shape[1]} channel(s)")
    gen = torch.Generator().manual_seed(seed * 1000 + list(CORRUPTIONS).index(name) * 10 + severity)
    out = CORRUPTIONS[name](images.detach().float().cpu(), severity, gen)
    return out.clamp(0, 1).to(images.dtype)


class CorruptionShifts:
    """Corrupted copies of a normalized image test set: un-normalize, corrupt, normalize again."""

    def __init__(self, x_test: torch.Tensor, y_test: torch.Tensor, mean, std, seed: int = 0):
        self.x, self.y = x_test.detach().cpu(), y_test.detach().cpu()
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
        self.seed = seed
        self.names = tuple(n for n in CORRUPTIONS if n not in COLOR_ONLY or self.x.shape[1] == 3)

    def test_set(self, name: str, severity: int) -> tuple[torch.Tensor, torch.Tensor]:
        raw = (self.x * self.std + self.mean).clamp(0, 1)
        return (corrupt(raw, name, severity, self.seed) - self.mean) / self.std, self.y
