# redis in docker-compose.yml: a mesh destination, like consul/services/redis.hcl but reached
# by container name. Redis has no Consul client of its own: consul-init registers this with
# the server, with Redis's own token (CONSUL_REDIS_TOKEN).
#
# Redis listens on 127.0.0.1 inside its container, and its sidecar (redis-sidecar) shares that
# network namespace: the sidecar's mTLS listener on redis:21000 is the only way in, and only
# identities the intentions allow (gateway, worker) get through.
service {
  name    = "redis"
  id      = "redis"
  address = "redis"
  port    = 6379

  # No check of its own: Redis is on loopback where this server cannot probe it. Compose's
  # healthcheck (redis-cli ping, inside the container) gates start-up; the sidecar's own
  # checks (TCP on redis:21000, alias of this service) are Consul's view.

  connect {
    sidecar_service {
      port = 21000
      proxy {
        local_service_address = "127.0.0.1"
        local_service_port    = 6379
      }
    }
  }
}
