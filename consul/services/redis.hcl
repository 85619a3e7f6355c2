# redis: the Celery broker/result backend and the event pub/sub channel.
#
# A mesh *destination*: it declares no upstreams. Its sidecar's public listener (21000) takes
# mTLS from other sidecars, asks the agent whether the caller's identity may reach "redis"
# (consul/intentions/redis.hcl) and forwards allowed connections to 127.0.0.1:6379. Redis
# itself binds to loopback only, so the sidecar is the one way in from other hosts.
service {
  name = "redis"
  id   = "redis"
  port = 6379

  check {
    name     = "redis accepts TCP"
    tcp      = "127.0.0.1:6379"
    interval = "10s"
    timeout  = "2s"
  }

  connect {
    sidecar_service {
      # Fixed, not auto-assigned from 21000-21255, so no sidecar can ever take 21210
      # (the couchbase upstream port below) and firewall rules can name it.
      port = 21000
      proxy {
        local_service_address = "127.0.0.1"
        local_service_port    = 6379
      }
    }
  }
}
