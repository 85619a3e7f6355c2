# worker: a Celery inference worker (asyncinfer worker). It listens on no port.
#
# With ASYNCINFER_MESH=consul each worker registers exactly this itself (shared/mesh.py), with
# ids, ports and the TTL from its settings; this file is the same definition for agents that
# load service files (consul agent -config-dir consul/services).
#
# A mesh *source* with the same needs as the gateway, as identity "worker":
# - redis on 127.0.0.1:16380: it consumes tasks, stores results and publishes status events.
#   A different port from the gateway's 16379 so both sidecars fit on one dev host (Redis has
#   no cluster map, so any local port works). ASYNCINFER_REDIS_URL=redis://127.0.0.1:16380/0
# - couchbase on 127.0.0.1:21210: it moves jobs running -> succeeded/failed with CAS. Must be
#   21210 like the gateway's (the node's alternate address names one port; see
#   couchbase.hcl), so worker and gateway sit in separate network namespaces in production.
# Port 0 in the registration: Consul needs a port for the sidecar's local service, but no one
# may connect to a worker; no intention names it as a destination.
service {
  name = "worker"
  id   = "worker"
  port = 0

  check {
    # A TTL, because there is no port to probe: the worker's consumer loop marks it passing
    # every ttl/3 (workers/heartbeat.py), so it turns critical when the worker stops
    # consuming (frozen, stuck in a batch, lost its broker), not only when the process is gone.
    # Same as ASYNCINFER_CONSUL_WORKER_TTL_S; the check id is "service:worker".
    name = "worker consumes"
    ttl  = "30s"
  }

  connect {
    sidecar_service {
      port = 21003
      proxy {
        upstreams = [
          {
            destination_name = "redis"
            local_bind_port  = 16380
          },
          {
            destination_name = "couchbase"
            local_bind_port  = 21210
          },
        ]
      }
    }
  }
}
