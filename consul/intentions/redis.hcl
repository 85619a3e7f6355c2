# Who may open a connection to redis (through redis's sidecar). Everyone else falls through
# to default-deny.hcl.
Kind = "service-intentions"
Name = "redis"
Sources = [
  {
    # Enqueues Celery tasks, reads results, subscribes to job events for SSE.
    Name        = "gateway"
    Action      = "allow"
    Description = "gateway enqueues tasks and streams job events"
  },
  {
    # Consumes tasks, stores results, publishes status events.
    Name        = "worker"
    Action      = "allow"
    Description = "worker consumes tasks and publishes job events"
  },
]
