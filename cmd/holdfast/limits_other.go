//go:build !unix

package main

import (
	"log/slog"
	"time"
)

// streamCap is --max-streams as given where there is no open-file limit
// to read.
func streamCap(n int, _ *slog.Logger) int { return n }

// processCPU is unknown here: the benchmark leaves the figure out.
func processCPU() time.Duration { return 0 }
