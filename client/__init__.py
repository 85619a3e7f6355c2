"""The batch submission client behind `asyncinfer submit`."""

from client.command import run_submit
from client.runner import SubmitOptions

__all__ = ["SubmitOptions", "run_submit"]
