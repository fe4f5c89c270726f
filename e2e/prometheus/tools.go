//go:build tools

// Package tools pins Prometheus and promtool for the e2e world and the alert rule tests.
package tools

import (
	_ "github.com/prometheus/prometheus/cmd/prometheus"
	_ "github.com/prometheus/prometheus/cmd/promtool"
)
