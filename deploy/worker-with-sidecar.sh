#!/bin/sh
# Entrypoint of a docker-compose.yml worker: this replica's own Consul sidecar, in its own
# container, then the worker itself.
#
#   sh /app/deploy/worker-with-sidecar.sh asyncinfer worker
#
# Why in one container: `docker compose up --scale worker=N` makes N containers of one service,
# while a sidecar in a container of its own (network_mode: service:worker) would join only one
# of them. Here each replica brings its sidecar, in its network namespace, so the worker's
# 127.0.0.1 upstreams (redis 16380, couchbase 21210) are its own proxy's.
#
# Identity: ASYNCINFER_CONSUL_SERVICE_ID=worker-%h, where %h is the container's host name (its
# short id, unique per replica; shared/config.py). The id is read through the worker's own
# settings, so the registration (shared/mesh.py) and this proxy always name the same one. The
# worker registers itself and this sidecar when it starts; the proxy waits for that registration
# (it exits while there is none) and starts again whenever it exits.
#
# Stopping: with `init: true`, docker-init is PID 1 and passes SIGTERM to the worker alone (this
# script execs it). The worker drains (finishes its batch, gives its buffered jobs back, leaves
# Consul) through the sidecar, which runs on until the worker has exited and the container stops.
set -eu

# Settings that do not validate: let the worker itself say so, on one line, and exit 2.
service_id=$(python -c 'from shared.config import get_settings; print(get_settings().consul_service_id or "worker")' \
    2>/dev/null) || exec "$@"
consul_http_addr=${ASYNCINFER_CONSUL_URL:-http://127.0.0.1:8500}

(
    while :; do
        consul connect proxy -sidecar-for "$service_id" -http-addr="$consul_http_addr" ||
            echo "worker-with-sidecar: the sidecar of $service_id exited ($?); starting it again" >&2
        sleep 2
    done
) &

exec "$@"
