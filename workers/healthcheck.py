"""`python -m workers.healthcheck`: exit 0 when this host's worker answers a Celery ping.

For container health checks: it asks the worker itself, over the broker, not just whether its
dependencies are up, so a worker stuck or gone reads as unhealthy.
"""

from __future__ import annotations

import socket
import sys

from shared.config import get_settings
from shared.queue import make_celery


def main(timeout_s: float = 5.0) -> int:
    # `asyncinfer worker` keeps Celery's default node name, celery@<hostname>.
    node = f"celery@{socket.gethostname()}"
    replies = make_celery(get_settings()).control.ping(destination=[node], timeout=timeout_s)
    if any(node in reply for reply in replies):
        return 0
    print(f"no reply from {node}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
