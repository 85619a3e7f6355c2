# Default deny for the whole mesh: no service may reach any other unless a more specific
# intention allows it.
#
# Apply every file in this directory with `consul config write <file>` (one config entry per
# file). Consul evaluates the most specific match first: an entry naming the destination
# (redis.hcl, couchbase.hcl) and the source beats this wildcard, so these two lines only
# decide connections that nothing else mentions, e.g. a leaked certificate for "intruder",
# or gateway -> worker.
#
# Explicit on purpose: with ACLs disabled (dev agents, tests) Consul's implicit default is
# allow, and with ACLs on it follows acl.default_policy. This entry makes the answer the
# same everywhere.
Kind = "service-intentions"
Name = "*"
Sources = [
  {
    Name   = "*"
    Action = "deny"
  },
]
