"""The benchmark's images: generated, photo-like, mixed sizes and formats, the same every run."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from tests.support.images import gradients

# From a small camera frame to full HD; JPEG and PNG, so that both decoders are measured.
SIZES_PX = ((320, 240), (640, 480), (1280, 720), (1920, 1080))
FORMATS = ("JPEG", "PNG")
CONTENT_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png"}


@dataclass(frozen=True)
class BenchImage:
    name: str
    data: bytes
    content_type: str
    width: int
    height: int


def photo_like(width: int, height: int, seed: int) -> Image.Image:
    """Smooth gradients, shapes, a blur and sensor-like noise: compresses like a photo, not
    like a flat test card (flat images make PNG decoding unrealistically cheap)."""
    rng = np.random.default_rng(seed)
    image = gradients(width, height, rng, amplitude=100, periods_px=(20, 200))
    draw = ImageDraw.Draw(image)
    for _ in range(12):
        x0, y0 = int(rng.integers(0, width)), int(rng.integers(0, height))
        x1, y1 = x0 + int(rng.integers(4, width // 3)), y0 + int(rng.integers(4, height // 3))
        colour = tuple(int(v) for v in rng.integers(0, 255, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x0, y0, x1, y1), fill=colour)
    image = image.filter(ImageFilter.GaussianBlur(1.5))
    noise = rng.normal(0, 4, (height, width, 3))
    return Image.fromarray((np.asarray(image, dtype="float32") + noise).clip(0, 255).astype("uint8"), "RGB")


def encode(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    if fmt == "JPEG":
        image.save(buffer, fmt, quality=90)
    else:
        image.save(buffer, fmt, compress_level=6)
    return buffer.getvalue()


def image_set(count: int = 32, seed: int = 0) -> list[BenchImage]:
    """`count` images cycling through every size × format, each with its own content."""
    images = []
    combos = [(size, fmt) for size in SIZES_PX for fmt in FORMATS]
    for index in range(count):
        (width, height), fmt = combos[index % len(combos)]
        data = encode(photo_like(width, height, seed + index), fmt)
        name = f"{index:03d}_{width}x{height}.{fmt.lower()}"
        images.append(BenchImage(name, data, CONTENT_TYPES[fmt], width, height))
    return images


def describe(images: list[BenchImage]) -> str:
    total_mb = sum(len(image.data) for image in images) / 1e6
    return f"{len(images)} images, {len(SIZES_PX)} sizes {SIZES_PX[0][0]}×{SIZES_PX[0][1]} to " \
        f"{SIZES_PX[-1][0]}×{SIZES_PX[-1][1]}, JPEG q90 and PNG, {total_mb:.1f} MB"


def save_image_dir(images: list[BenchImage], directory: Path) -> None:
    """Write the set once, so every process of the run reads the very same bytes."""
    directory.mkdir(parents=True, exist_ok=True)
    for image in images:
        (directory / image.name).write_bytes(image.data)


def load_image_dir(directory: Path) -> list[BenchImage]:
    images = []
    for path in sorted(directory.iterdir()):
        fmt = path.suffix.lstrip(".").upper()
        size = path.stem.split("_")[1]
        width, height = (int(v) for v in size.split("x"))
        images.append(BenchImage(path.name, path.read_bytes(), CONTENT_TYPES[fmt], width, height))
    return images
