// Package chaos runs several real holdfast servers against a PostgreSQL
// and a Redis of its own, injects faults while clients storm them, records
// every client operation, and checks the history for linearizability
// (porcupine) and the database for every guarantee in DESIGN.md.
//
// It owns the processes it breaks: a throwaway PostgreSQL cluster (stopped
// with pg_ctl stop -m immediate and started again), a Redis server (killed,
// flushed, restarted), three `holdfast serve` processes (kill -9, SIGSTOP
// past the lock TTL, SIGCONT), and a Toxiproxy in front of each server's
// links to the databases (latency, a black hole, connection resets).
package chaos

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	goredis "github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/holdfast/holdfast/internal/testrig/pgtest"
)

// redisServer is a Redis the harness may kill and flush.
type redisServer struct {
	t    testing.TB
	port int
	dir  string
	cmd  *exec.Cmd
}

func startRedis(t testing.TB) *redisServer {
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Fatal("chaos: redis-server is not installed; scripts/services.sh installs it")
	}
	r := &redisServer{t: t, port: pgtest.FreePort(t), dir: t.TempDir()}
	r.start()
	t.Cleanup(r.kill)
	return r
}

func (r *redisServer) start() {
	r.cmd = exec.Command("redis-server", "--port", strconv.Itoa(r.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", r.dir)
	if err := r.cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	c := r.client()
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for c.Ping(context.Background()).Err() != nil {
		if time.Now().After(deadline) {
			r.t.Fatal("chaos: redis did not start")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (r *redisServer) kill() {
	if r.cmd != nil && r.cmd.Process != nil {
		_ = r.cmd.Process.Kill()
		_ = r.cmd.Wait()
	}
}

func (r *redisServer) client() *goredis.Client {
	return goredis.NewClient(&goredis.Options{Addr: r.addr()})
}

func (r *redisServer) flush() error {
	c := r.client()
	defer c.Close()
	return c.FlushAll(context.Background()).Err()
}

func (r *redisServer) addr() string { return fmt.Sprintf("127.0.0.1:%d", r.port) }

// proxies is Toxiproxy, as a library, in front of each server's links.
type proxies struct {
	srv *toxiproxy.ApiServer
}

func newProxies() *proxies {
	return &proxies{srv: toxiproxy.NewServer(toxiproxy.NewMetricsContainer(nil), zerolog.Nop())}
}

func (p *proxies) add(t testing.TB, name, upstream string) *toxiproxy.Proxy {
	px := toxiproxy.NewProxy(p.srv, name, "127.0.0.1:0", upstream)
	if err := px.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(px.Stop)
	return px
}

// toxic adds a toxic to both directions of a proxy's connections.
func toxic(px *toxiproxy.Proxy, name, typ string, attrs string) error {
	for _, stream := range []string{"upstream", "downstream"} {
		js := fmt.Sprintf(`{"name":%q,"type":%q,"stream":%q,"toxicity":1,"attributes":%s}`, name+"-"+stream, typ, stream, attrs)
		if _, err := px.Toxics.AddToxicJson(strings.NewReader(js)); err != nil {
			return err
		}
	}
	return nil
}

func untoxic(px *toxiproxy.Proxy, name string) {
	for _, stream := range []string{"upstream", "downstream"} {
		_ = px.Toxics.RemoveToxic(context.Background(), name+"-"+stream)
	}
}

// instance is one `holdfast serve` process.
type instance struct {
	t       testing.TB
	n       int
	bin     string
	args    []string
	port    int
	logPath string
	cmd     *exec.Cmd
	waited  chan struct{}
	pgLink  *toxiproxy.Proxy
	rdLink  *toxiproxy.Proxy
	stopped bool
}

func (in *instance) url() string { return fmt.Sprintf("http://127.0.0.1:%d", in.port) }

func (in *instance) start() {
	logf, err := os.OpenFile(in.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		in.t.Fatal(err)
	}
	in.cmd = exec.Command(in.bin, in.args...)
	in.cmd.Stdout, in.cmd.Stderr = logf, logf
	if err := in.cmd.Start(); err != nil {
		in.t.Fatal(err)
	}
	in.stopped = false
	in.waited = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) {
		_ = cmd.Wait()
		logf.Close()
		close(done)
	}(in.cmd, in.waited)
}

// startReady starts the instance and waits until it answers /readyz. A
// port that was free when it was picked but taken before the server bound
// it (the system gave it to another listener meanwhile: a proxy's) is
// picked again.
func (in *instance) startReady(timeout time.Duration) error {
	for try := 0; ; try++ {
		in.start()
		deadline := time.Now().Add(timeout)
		var err error
		for {
			if err = waitReady(in.url(), 200*time.Millisecond); err == nil {
				return nil
			}
			exited := false
			select {
			case <-in.waited:
				exited = true
			default:
			}
			if exited || time.Now().After(deadline) {
				log, _ := os.ReadFile(in.logPath)
				if exited && try < 3 && bytes.Contains(log, []byte("address already in use")) {
					break
				}
				return err
			}
		}
		in.port = pgtest.FreePort(in.t)
		for i, a := range in.args {
			if a == "--addr" && i+1 < len(in.args) {
				in.args[i+1] = fmt.Sprintf("127.0.0.1:%d", in.port)
			}
		}
	}
}

// kill9 is a crash: no graceful shutdown, in-flight requests lost.
func (in *instance) kill9() {
	if in.stopped {
		in.signal(syscall.SIGCONT)
	}
	_ = in.cmd.Process.Signal(syscall.SIGKILL)
	<-in.waited
}

func (in *instance) signal(sig syscall.Signal) {
	_ = in.cmd.Process.Signal(sig)
	in.stopped = sig == syscall.SIGSTOP
}

func (in *instance) stop() {
	select {
	case <-in.waited:
		return
	default:
	}
	if in.stopped {
		in.signal(syscall.SIGCONT)
	}
	_ = in.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-in.waited:
	case <-time.After(10 * time.Second):
		in.kill9()
	}
}

func waitReady(url string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	c := &http.Client{Timeout: time.Second}
	var last error
	for time.Now().Before(deadline) {
		resp, err := c.Get(url + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		last = err
		time.Sleep(50 * time.Millisecond)
	}
	return last
}
