"""Benchmarks of asyncinfer: the model's ceiling, the pipeline end to end, the naive design,
SSE fan-out and the submit rate, all in one run (`python -m bench`, or `scripts/bench`)."""
