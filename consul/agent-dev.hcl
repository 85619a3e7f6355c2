# Local development agent for the asyncinfer service mesh.
#
#   consul agent -dev -config-file consul/agent-dev.hcl [-config-dir consul/services]
#   consul config write consul/intentions/default-deny.hcl   (then redis.hcl, couchbase.hcl)
#   consul connect proxy -sidecar-for redis                   (one built-in proxy per service)
#
# `asyncinfer up --mesh consul` does all of this (cli/up_mesh.py).
#
# -dev gives a single in-memory server with the built-in Connect CA; this file only pins what
# we rely on. Tests (tests/support/consul_agent.py) load it too and override every port with -*-port
# flags so they never collide with an agent started by hand.
#
# Default deny: with ACLs disabled (as in -dev) Consul's default intention action is *allow*,
# so the mesh is only default-deny because consul/intentions/default-deny.hcl says so. In
# production ACLs are on with default_policy = "deny" as well.

node_name   = "asyncinfer-dev"
datacenter  = "dc1"
bind_addr   = "127.0.0.1"
client_addr = "127.0.0.1"

connect {
  # The built-in CA issues every sidecar's leaf certificate (SPIFFE ID .../svc/<name>).
  enabled = true
}

ports {
  http     = 8500 # the API the sidecars, the CLI and asyncinfer (ASYNCINFER_CONSUL_URL) use
  grpc     = 8502 # xDS, only needed if Envoy replaces the built-in proxy
  grpc_tls = -1
  https    = -1
  dns      = -1 # nothing resolves *.consul: upstreams are fixed local ports
}

# The UI is not needed and dev mode would otherwise serve it on the HTTP port.
ui_config {
  enabled = false
}

# No calls home to checkpoint-api.hashicorp.com (this machine cannot reach it anyway).
disable_update_check = true

log_level = "INFO"
