# The Consul server of docker-compose.yml (loaded with -config-dir next to the image's defaults).
#
# One server, no client agents: on a single Compose host every process registers with this
# agent over the compose network (ASYNCINFER_CONSUL_URL=http://consul:8500). On several hosts
# each host runs a client agent and its processes use that one (127.0.0.1:8500).

node_name        = "consul-server" # consul-init gives this node's agent its token
server           = true
bootstrap_expect = 1
# The HTTP API must answer other containers: the apps register, sidecars fetch their
# certificates and configuration, consul-init writes the intentions.
client_addr = "0.0.0.0"

connect {
  # The built-in CA signs every sidecar's certificate (SPIFFE ID .../svc/<name>).
  enabled = true
}

ports {
  # The built-in proxies use the HTTP API only. Switching the sidecars to Envoy
  # (`consul connect envoy -sidecar-for …`) needs xDS on gRPC: set grpc = 8502 then.
  grpc = -1
  dns  = -1
}

ui_config {
  enabled = true # on 127.0.0.1:8500 of the host only (see docker-compose.yml)
}

# ACLs on, default deny: a request without a token can neither register a service nor change an
# intention. docker-compose.yml hands the server its management token (CONSUL_MANAGEMENT_TOKEN,
# in a file it writes at start); consul-init then gives the server's agent a token of its node's
# identity and creates each service's token (its service identity only) from the secrets
# compose is given, so that apps and sidecars hold their own and nothing more.
acl {
  enabled                  = true
  default_policy           = "deny"
  down_policy              = "extend-cache"
  enable_token_persistence = true # the agent token consul-init sets survives a restart
}

disable_update_check = true
