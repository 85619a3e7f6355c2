# couchbase in docker-compose.yml: a mesh destination for the KV (data) service, like
# consul/services/couchbase.hcl but reached by container name. consul-init registers it with
# the server, with Couchbase's own token (CONSUL_COUCHBASE_TOKEN).
#
# The SDK follows the cluster map, not the address it bootstrapped from, so the node
# advertises an alternate address 127.0.0.1 with kv=21210 (the couchbase-alternate-address
# step of docker-compose.yml). Clients ask for it with couchbase://127.0.0.1:21210?network=external
# and so reach the node only through their sidecar's couchbase upstream on 127.0.0.1:21210.
#
# Unlike Redis, Couchbase Server cannot be bound to loopback, so docker-compose.yml keeps it on a
# network of its own (couchbase-data, internal) that only its sidecar and its set-up steps join:
# the sidecar runs in a container of its own on both networks, registered here as reachable at
# couchbase-mesh (its alias on the apps' network only), and forwards to couchbase:11210.
#
# No check on the service itself: the Consul server is not on couchbase-data, so it cannot reach
# Couchbase's port (that is the point). Compose starts the sidecar and the apps only once
# Couchbase's own health check passes; the sidecar's listener has its Connect checks.
service {
  name    = "couchbase"
  id      = "couchbase"
  address = "couchbase"
  port    = 11210

  connect {
    sidecar_service {
      address = "couchbase-mesh"
      port    = 21001
      proxy {
        local_service_address = "couchbase"
        local_service_port    = 11210
      }
    }
  }
}
