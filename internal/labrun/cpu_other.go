//go:build !unix

package labrun

import "time"

// processCPU is unknown here: the benchmark leaves the figure out.
func processCPU() time.Duration { return 0 }

// pidCPU is unknown here too.
func pidCPU(int) time.Duration { return 0 }
