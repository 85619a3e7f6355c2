"""Which device a worker uses, and one worker per GPU: pure functions of what is available, so
that they are tested without a GPU."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from shared.errors import StartupError


class RuntimeUnavailable(StartupError):
    """The configured runtime or device cannot run on this installation."""


CUDA_PROVIDER = "CUDAExecutionProvider"
CPU_PROVIDER = "CPUExecutionProvider"


def choose_device(requested: str, gpu_count: int, what_sees: str = "TensorFlow") -> str:
    """`gpu:0` when a GPU is requested or `auto` finds one, else `cpu`; `gpu` without one is refused."""
    if requested == "cpu":
        return "cpu"
    if requested == "gpu" and gpu_count == 0:
        raise RuntimeUnavailable(f"ASYNCINFER_DEVICE=gpu, but {what_sees} sees no GPU")
    return "gpu:0" if gpu_count else "cpu"


def choose_providers(requested: str, available: Sequence[str]) -> list[str]:
    """ONNX Runtime providers: CUDA then CPU when a GPU may be used and the build has CUDA."""
    has_cuda = CUDA_PROVIDER in available
    if requested == "gpu" and not has_cuda:
        raise RuntimeUnavailable("ASYNCINFER_DEVICE=gpu, but this onnxruntime build has no CUDA provider "
                                 "(install the `gpu` extra: onnxruntime-gpu)")
    if requested != "cpu" and has_cuda:
        return [CUDA_PROVIDER, CPU_PROVIDER]
    return [CPU_PROVIDER]


def worker_environments(gpu_count: int, base: Mapping[str, str]) -> list[dict[str, str]]:
    """One environment per worker: one per GPU, each seeing only its own (CUDA_VISIBLE_DEVICES);
    without GPUs, one worker with the environment as it is."""
    if gpu_count <= 0:
        return [dict(base)]
    return [{**base, "CUDA_VISIBLE_DEVICES": str(index)} for index in range(gpu_count)]
