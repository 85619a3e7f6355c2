# gateway: the FastAPI HTTP API (asyncinfer api, port 8000).
#
# With ASYNCINFER_MESH=consul the gateway registers exactly this itself on start-up and
# deregisters on shutdown (shared/mesh.py), upstream ports taken from its Redis and store URLs;
# this file is the same definition for agents that load service files.
#
# A mesh *source*. Its sidecar opens a plain local listener per upstream and carries each
# connection over mTLS, as identity "gateway", to the destination's sidecar:
# - redis on 127.0.0.1:16379: the gateway enqueues Celery tasks, reads results and holds the
#   one pub/sub subscription that feeds SSE. ASYNCINFER_REDIS_URL=redis://127.0.0.1:16379/0
# - couchbase on 127.0.0.1:21210: it creates job documents, reads them and cancels with CAS.
#   ASYNCINFER_STORE=couchbase://127.0.0.1:21210?network=external (see couchbase.hcl for why
#   the port is fixed and the node needs an alternate address).
# The gateway's own port 8000 is published to users by the edge (load balancer / ingress),
# not through the mesh; nothing in the mesh calls the gateway, so no intention names it as
# a destination and the sidecar's public listener rejects everyone.
service {
  name = "gateway"
  id   = "gateway"
  port = 8000

  check {
    name     = "gateway /healthz"
    http     = "http://127.0.0.1:8000/healthz"
    interval = "10s"
    timeout  = "2s"
  }

  connect {
    sidecar_service {
      port = 21002
      proxy {
        upstreams = [
          {
            destination_name = "redis"
            local_bind_port  = 16379
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
