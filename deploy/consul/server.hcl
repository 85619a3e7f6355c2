# The Consul server of docker-compose.yml (loaded with -config-dir next to the image's defaults).
#
# One server, no client agents: on a single Compose host every process registers with this
# agent over the compose network (ASYNCINFER_CONSUL_URL=http://consul:8500). On several hosts
# each host runs a client agent and its processes use that one (127.0.0.1:8500).

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

# ACLs stay off here, as in the dev agent: the intentions still deny by default because
# consul/intentions/default-deny.hcl says so. A shared deployment turns ACLs on with
# default_policy = "deny", so that nobody on the network can rewrite intentions.
disable_update_check = true
