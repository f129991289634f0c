//go:build !unix

package main

import "log/slog"

// streamCap is --max-streams as given where there is no open-file limit
// to read.
func streamCap(n int, _ *slog.Logger) int { return n }
