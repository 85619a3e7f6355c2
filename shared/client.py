"""`asyncinfer submit`: send files to the gateway and print each final job as a JSON line."""

from __future__ import annotations

import argparse
import hashlib
import json
import mimetypes
import sys
from pathlib import Path

import httpx

from shared.config import get_settings

TERMINAL = {"succeeded", "failed", "cancelled"}


def submit_files(args: argparse.Namespace) -> int:
    settings = get_settings()
    base_url = args.url or f"http://{settings.host}:{settings.port}"
    headers = {"X-API-Key": args.api_key} if args.api_key else {}
    failures = 0
    with httpx.Client(base_url=base_url, headers=headers, timeout=60.0) as client:
        for path in map(Path, args.paths):
            try:
                data = path.read_bytes()
            except OSError as e:
                print(f"asyncinfer submit: {path}: {e.strerror}", file=sys.stderr)
                failures += 1
                continue
            content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            response = client.post(
                "/v1/jobs",
                params={"top_k": args.top_k},
                files={"file": (path.name, data, content_type)},
                headers={"Idempotency-Key": hashlib.sha256(data).hexdigest()},
            )
            if response.status_code != 202:
                detail = response.json().get("detail", response.text) if response.content else ""
                print(f"asyncinfer submit: {path}: {response.status_code} {detail}", file=sys.stderr)
                failures += 1
                continue
            job = response.json()
            while job["status"] not in TERMINAL:
                job = client.get(f"/v1/jobs/{job['id']}", params={"wait": 30}, timeout=40).json()
            print(json.dumps({"file": str(path), **job}))
            failures += job["status"] != "succeeded"
    return 1 if failures else 0
