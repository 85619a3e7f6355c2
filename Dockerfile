# The gateway and the workers: one image, the command picks the role (see docker-compose.yml).

# The Consul binary only (a static Go build): a compose worker replica runs its own sidecar in its
# own container (deploy/worker-with-sidecar.sh). The release of docker-compose.yml's consul service.
FROM hashicorp/consul:1.16.3 AS consul

FROM python:3.11-slim

# The uv that wrote uv.lock, pinned so every build installs the same way.
RUN pip install --no-cache-dir uv==0.13.9

RUN useradd --create-home --uid 10001 asyncinfer
COPY --from=consul /bin/consul /usr/local/bin/consul
WORKDIR /app
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PROJECT_ENVIRONMENT=/app/.venv \
    PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    TF_CPP_MIN_LOG_LEVEL=2

# Dependencies first, in their own layer: code changes do not reinstall TensorFlow.
COPY pyproject.toml uv.lock ./
RUN uv sync --frozen --no-dev --no-install-project

COPY README.md ./
COPY api ./api
COPY shared ./shared
COPY cli ./cli
COPY client ./client
COPY asyncinfer_client ./asyncinfer_client
COPY workers ./workers
COPY models ./models
COPY web ./web
# The entrypoint of a compose worker replica: its sidecar, then the worker (docker-compose.yml).
COPY deploy/worker-with-sidecar.sh ./deploy/
RUN uv sync --frozen --no-dev

USER asyncinfer
EXPOSE 8000
CMD ["asyncinfer", "api", "--host", "0.0.0.0"]
