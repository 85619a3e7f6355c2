//go:build tools

// Package tools is a wrapper module that builds the Consul agent binary at a
// pinned release, straight from the Go module proxy.
//
// Why a wrapper: `go install github.com/hashicorp/consul@vX` refuses, because
// Consul's go.mod replaces its own submodules (api, sdk, proto-public,
// envoyextensions, troubleshoot) with local directories. Replace directives
// only apply in the main module, so this module requires the release and pins
// each submodule to the version that release's go.mod requires, and copies the
// release's exclude lines (go-msgpack v1.1.5/v1.1.6 break the raft codec).
// go.sum pins every hash, so a build never resolves anything new.
//
// The blank import below keeps `go mod tidy` from dropping the requirement;
// the build tag keeps it out of every real build. scripts/build-consul runs
// `go build github.com/hashicorp/consul` inside this module, and
// `scripts/build-consul --update` regenerates go.mod/go.sum for a new release.
package tools

import _ "github.com/hashicorp/consul"
