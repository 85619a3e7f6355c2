#!/bin/sh
# One-shot set-up of the Couchbase Server of docker-compose.yml: initialise the cluster, then
# create the bucket, scope and collection the job store uses. Safe to re-run: a step whose
# result already exists succeeds, so `docker compose up` works on an existing volume.
set -eu

host=${COUCHBASE_HOST:-couchbase}:8091
user=${COUCHBASE_USERNAME:?}
password=${COUCHBASE_PASSWORD:?}
bucket=${COUCHBASE_BUCKET:?}
scope=${COUCHBASE_SCOPE:?}
collection=${COUCHBASE_COLLECTION:?}

cli() { couchbase-cli "$@" -c "$host" -u "$user" -p "$password"; }

# Run a create command; its refusal because the thing already exists counts as success.
create() {
    if output=$("$@" 2>&1); then
        echo "$output"
        return 0
    fi
    echo "$output"
    echo "$output" | grep -qi "already exist"
}

if cli server-list >/dev/null 2>&1; then
    echo "couchbase-init: cluster already initialised"
else
    # Data service only: the store uses key-value and sub-document operations, no queries.
    couchbase-cli cluster-init -c "$host" \
        --cluster-username "$user" --cluster-password "$password" \
        --services data --cluster-ramsize 512
fi

# Documents carry their own expiry (ASYNCINFER_JOB_TTL_S); the bucket sets none.
create cli bucket-create --bucket "$bucket" --bucket-type couchbase \
    --bucket-ramsize 256 --bucket-replica 0 --wait
[ "$scope" = _default ] || create cli collection-manage --bucket "$bucket" --create-scope "$scope"
[ "$collection" = _default ] ||
    create cli collection-manage --bucket "$bucket" --create-collection "$scope.$collection"
echo "couchbase-init: $bucket.$scope.$collection is ready"
