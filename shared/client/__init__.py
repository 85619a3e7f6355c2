"""The batch submission client behind `asyncinfer submit`."""

from shared.client.command import run_submit
from shared.client.runner import SubmitOptions

__all__ = ["SubmitOptions", "run_submit"]
