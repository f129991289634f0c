//go:build unix

package main

import (
	"log/slog"
	"syscall"
)

// streamCap bounds the open streams at half the process's open-file
// limit: each is a socket, and the database and every other client need
// the rest.
func streamCap(n int, log *slog.Logger) int {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil || rl.Cur == 0 || uint64(n) <= rl.Cur/2 {
		return n
	}
	log.Warn("--max-streams lowered to half the open-file limit", "asked", n, "limit", rl.Cur, "streams", rl.Cur/2)
	return int(rl.Cur / 2)
}
