# couchbase: the production job store (key job::{id}, CAS updates, TTL).
#
# A mesh *destination* for the Couchbase data service (KV, memcached binary protocol on
# 11210). The job store only does KV operations (get, insert, replace with CAS, touch), so
# KV is the only port that has to cross the mesh:
# - The SDK bootstraps over KV and receives the cluster map over that same connection
#   (GCCCP), so it needs neither 8091 (management) nor 8093 (query) at run time. Creating the
#   bucket/collection is an operator step against 8091 outside the app's path.
# - The cluster map names node addresses and ports, and the SDK connects to what the map
#   says, not to what it bootstrapped from. So the node must advertise an alternate address
#   127.0.0.1 with kv=21210 (`couchbase-cli setting-alternate-address`), and clients use
#   couchbase://127.0.0.1:21210?network=external. Otherwise the SDK dials
#   <node>:11210 directly, which default deny (and the firewall) will refuse.
# - Consequence: every client's couchbase upstream must bind the same port (21210), so
#   gateway and worker each need their own network namespace (pod / Nomad group) when both
#   reach Couchbase through the mesh. Plain TLS ports (11207, 18091) are not used: the
#   sidecars already provide mTLS.
# If the store ever needs N1QL or management calls, register couchbase-query (8093) /
# couchbase-mgmt (8091) as separate services: one Consul service carries one port.
service {
  name = "couchbase"
  id   = "couchbase"
  port = 11210

  check {
    name     = "couchbase KV accepts TCP"
    tcp      = "127.0.0.1:11210"
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
