# Who may open a connection to couchbase KV (through couchbase's sidecar). Everyone else
# falls through to default-deny.hcl.
Kind = "service-intentions"
Name = "couchbase"
Sources = [
  {
    # Creates job documents, reads them (GET /v1/jobs/{id}), cancels with CAS.
    Name        = "gateway"
    Action      = "allow"
    Description = "gateway creates, reads and cancels job documents"
  },
  {
    # Moves jobs through running -> succeeded/failed with CAS.
    Name        = "worker"
    Action      = "allow"
    Description = "worker records job progress and results"
  },
]
