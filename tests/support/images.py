"""Images made on the fly: varied content so that different images get different predictions."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw


def gradients(width: int, height: int, rng: np.random.Generator, *, amplitude: float,
              periods_px: tuple[float, float]) -> Image.Image:
    """Three smooth sine-wave colour channels with random periods: the base of a generated picture."""
    y, x = np.mgrid[0:height, 0:width].astype("float32")
    channels = [
        127 + amplitude * np.sin(x / rng.uniform(*periods_px) + rng.uniform(0, 6)) * np.cos(y / rng.uniform(*periods_px))
        for _ in range(3)
    ]
    return Image.fromarray(np.stack(channels, -1).clip(0, 255).astype("uint8"), "RGB")


def picture(width: int = 320, height: int = 240, seed: int = 0, mode: str = "RGB") -> Image.Image:
    """Smooth gradients plus a few shapes: photo-like enough to exercise the decoders."""
    rng = np.random.default_rng(seed)
    image = gradients(width, height, rng, amplitude=120, periods_px=(5, 60))
    draw = ImageDraw.Draw(image)
    for _ in range(6):
        x0, y0 = int(rng.integers(0, width)), int(rng.integers(0, height))
        draw.ellipse(
            (x0, y0, x0 + int(rng.integers(1, max(2, width // 2))), y0 + int(rng.integers(1, max(2, height // 2)))),
            fill=tuple(int(v) for v in rng.integers(0, 255, 3)),
        )
    return image.convert(mode)


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def jpeg(width: int = 320, height: int = 240, seed: int = 0, quality: int = 90) -> bytes:
    return encode(picture(width, height, seed), "JPEG", quality=quality)


def png_with_alpha(width: int = 300, height: int = 200, seed: int = 1) -> bytes:
    image = picture(width, height, seed).convert("RGBA")
    alpha = Image.linear_gradient("L").resize(image.size)
    image.putalpha(alpha)
    return encode(image, "PNG")


def grayscale_png(seed: int = 2) -> bytes:
    return encode(picture(256, 256, seed, mode="L"), "PNG")


def exif_rotated_jpeg(seed: int = 3) -> bytes:
    """Stored landscape, EXIF orientation 6 (rotate 90° clockwise to display)."""
    exif = Image.Exif()
    exif[0x0112] = 6
    return encode(picture(400, 240, seed), "JPEG", quality=90, exif=exif)


def webp(seed: int = 4) -> bytes:
    return encode(picture(300, 300, seed), "WEBP", quality=90)


def gif(seed: int = 5) -> bytes:
    frames = [picture(200, 160, seed + i).convert("P") for i in range(3)]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=100)
    return buffer.getvalue()


def bmp(seed: int = 6) -> bytes:
    return encode(picture(240, 180, seed), "BMP")


def parity_set() -> dict[str, tuple[bytes, str]]:
    """Name → (bytes, content type) for the parity test."""
    return {
        "jpeg": (jpeg(640, 480, seed=10), "image/jpeg"),
        "large_jpeg": (jpeg(1920, 1080, seed=11), "image/jpeg"),
        "png_alpha": (png_with_alpha(), "image/png"),
        "grayscale": (grayscale_png(), "image/png"),
        "exif_rotated": (exif_rotated_jpeg(), "image/jpeg"),
        "webp": (webp(), "image/webp"),
        "gif": (gif(), "image/gif"),
        "bmp": (bmp(), "image/bmp"),
    }
