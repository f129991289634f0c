package labrun

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/internal/metrics"
)

// serverProc is `holdfast serve` running as a process of its own, as a
// user runs it: the benchmark's client (this process) reaches it over
// loopback, and each process's CPU is counted apart.
type serverProc struct {
	cmd  *exec.Cmd
	base string // http://127.0.0.1:port
	log  *tailBuffer
	done chan error
	once sync.Once
}

// startServer runs serve on db (a database the lab made and set up) on a
// free loopback port, and returns once it listens.
func startServer(ctx context.Context, serve func(context.Context, ...string) *exec.Cmd, db string) (*serverProc, error) {
	cmd := serve(context.WithoutCancel(ctx), "--db", db, "--addr", "127.0.0.1:0",
		// One API key (the open server's) sends every request: a run
		// sends more keys than a real client does in an hour.
		"--max-idempotency-keys-per-hour", "1000000000")
	// Flags alone configure it: a HOLDFAST_ variable of the user's shell
	// (an admin key, a rate limit, another strategy) would change what
	// is measured, or lock the lab's client out.
	cmd.Env = nil
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "HOLDFAST_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	p := &serverProc{cmd: cmd, log: &tailBuffer{max: 4 << 10}, done: make(chan error, 1)}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = p.log
	if err := startTied(cmd, p.done); err != nil {
		return nil, fmt.Errorf("starting holdfast serve: %w", err)
	}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			// "holdfast listening on http://127.0.0.1:port (…)"
			if _, rest, ok := strings.Cut(sc.Text(), "listening on "); ok {
				u, _, _ := strings.Cut(rest, " ")
				select {
				case addr <- u:
				default:
				}
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case p.base = <-addr:
		return p, nil
	case err := <-p.done:
		p.once.Do(func() {})
		return nil, fmt.Errorf("holdfast serve exited before it listened: %v: %s", err, p.log)
	case <-time.After(30 * time.Second):
		p.stop()
		return nil, fmt.Errorf("holdfast serve did not listen within 30 s: %s", p.log)
	case <-ctx.Done():
		p.stop()
		return nil, ctx.Err()
	}
}

// stop ends the server as an operator would (SIGTERM: in-flight requests
// finish), or kills it after 10 s.
func (p *serverProc) stop() {
	p.once.Do(func() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
}

// cpu is the server's CPU time so far, user and system (0 where the
// system does not tell).
func (p *serverProc) cpu() time.Duration { return pidCPU(p.cmd.Process.Pid) }

// stats reads the batch counters from the server's /metrics.
func (p *serverProc) stats(ctx context.Context) (holdfast.Stats, error) {
	var st holdfast.Stats
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.base+"/metrics", nil)
	if err != nil {
		return st, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	return metrics.ParseStats(resp.Body)
}

// tailBuffer keeps the last max bytes written to it: a server's log, for
// the error when it fails.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = t.b[len(t.b)-t.max:]
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.TrimSpace(string(t.b))
}
