"""Classify every image in a folder, printing each result as it arrives. Interrupted (Ctrl-C), run
it again: each image's idempotency key comes from its content, so finished jobs come back at once
and no image is submitted twice."""

import os
import sys
from pathlib import Path

from asyncinfer_client import Client, Problem

folder = Path(sys.argv[1])
images = sorted(path for path in folder.iterdir() if path.suffix.lower() in {".jpg", ".jpeg", ".png", ".webp"})
with Client(os.environ.get("ASYNCINFER_URL", "http://127.0.0.1:8000")) as client:
    for image, outcome in client.submit_many(images, concurrency=8, top_k=3):
        if isinstance(outcome, Problem):
            print(f"{image}: refused ({outcome.status}: {outcome.detail})")
        elif outcome.status == "succeeded":
            best = outcome.predictions[0]
            print(f"{image}: {best.label} ({best.score:.1%})", flush=True)
        else:
            print(f"{image}: {outcome.status} ({outcome.error_code})", flush=True)
