//go:build tools

// Package tools pins crane, which `make image` uses to build the OCI image without a daemon.
package tools

import _ "github.com/google/go-containerregistry/cmd/crane"
