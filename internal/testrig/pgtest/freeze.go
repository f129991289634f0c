package pgtest

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// Freeze stops the cluster's every process (SIGSTOP): a paused virtual
// machine, or a host cut off without a reset. Connections stay open and
// nothing answers; new ones are accepted by the kernel and hang. Thaw
// lets it go on.
func (pg *Cluster) Freeze() { pg.signal(syscall.SIGSTOP) }

// Thaw continues a frozen cluster (SIGCONT).
func (pg *Cluster) Thaw() { pg.signal(syscall.SIGCONT) }

func (pg *Cluster) signal(sig syscall.Signal) {
	for _, pid := range Descendants([]int{Postmaster(pg.data)}) {
		_ = syscall.Kill(pid, sig)
	}
}

// Postmaster is the pid of the postmaster running in data (the first line
// of postmaster.pid), or 0.
func Postmaster(data string) int {
	b, err := os.ReadFile(filepath.Join(data, "postmaster.pid"))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0]))
	return pid
}

// Descendants lists the processes roots (0s skipped) and every process
// under them, parents first. PostgreSQL's backends each lead a session
// of their own, so a signal to the postmaster's process group misses
// them: each is signalled by its pid.
func Descendants(roots []int) []int {
	children := map[int][]int{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid …: comm may hold spaces and parentheses,
		// so read after the last closing one.
		fields := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
		if len(fields) < 2 {
			continue
		}
		ppid, _ := strconv.Atoi(fields[1])
		children[ppid] = append(children[ppid], pid)
	}
	var out []int
	seen := map[int]bool{0: true}
	queue := append([]int{}, roots...)
	for len(queue) > 0 {
		pid := queue[0]
		queue = queue[1:]
		if seen[pid] {
			continue
		}
		seen[pid] = true
		out = append(out, pid)
		queue = append(queue, children[pid]...)
	}
	return out
}
