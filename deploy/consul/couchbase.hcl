# couchbase in docker-compose.yml: a mesh destination for the KV (data) service, like
# consul/services/couchbase.hcl but reached by container name.
#
# The SDK follows the cluster map, not the address it bootstrapped from, so the node
# advertises an alternate address 127.0.0.1 with kv=21210 (the couchbase-alternate-address
# step of docker-compose.yml). Clients ask for it with couchbase://127.0.0.1:21210?network=external
# and so reach the node only through their sidecar's couchbase upstream on 127.0.0.1:21210.
#
# Unlike Redis, Couchbase Server cannot be bound to loopback, so couchbase:11210 stays open on
# the compose network; only configuration keeps the apps on the mesh. A shared network needs a
# firewall or network policy that admits 21001 (the sidecar) and the console port only.
service {
  name    = "couchbase"
  id      = "couchbase"
  address = "couchbase"
  port    = 11210

  check {
    name     = "couchbase KV accepts TCP"
    tcp      = "couchbase:11210"
    interval = "10s"
    timeout  = "2s"
  }

  connect {
    sidecar_service {
      port = 21001
      proxy {
        local_service_address = "127.0.0.1"
        local_service_port    = 11210
      }
    }
  }
}
