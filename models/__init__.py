"""The built-in models, each a plugin like any team's: found through the `asyncinfer.models`
entry points that pyproject.toml declares, never imported by the gateway or the workers."""
