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
# Default deny, twice: ACLs are on with default_policy = "deny", so a request without a token
# can neither register a service nor change an intention, and each service's token (its service
# identity) lets it register only itself and its sidecar; and consul/intentions/default-deny.hcl
# denies every connection no intention allows. The run's tokens (the operator's and the agent's)
# come from a config file `asyncinfer up --mesh consul` and the tests write for each run
# (cli/consul_dev.py: new_dev_tokens), never from this repository.

node_name   = "asyncinfer-dev"
datacenter  = "dc1"
bind_addr   = "127.0.0.1"
client_addr = "127.0.0.1"

acl {
  enabled        = true
  default_policy = "deny"
  # A server that cannot be asked keeps using the policies it had (the mesh goes on serving).
  down_policy = "extend-cache"
}

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
