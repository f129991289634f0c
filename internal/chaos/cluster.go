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
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/jackc/pgx/v5"
	goredis "github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
)

// freePort asks the kernel for a loopback port nobody uses now.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// run runs a command, failing the test with its output if it fails.
func run(t testing.TB, name string, args ...string) string {
	t.Helper()
	var out bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out.String())
	}
	return out.String()
}

// postgresServer is a throwaway cluster the harness may crash.
type postgresServer struct {
	t          testing.TB
	bin, data  string
	port       int
	asPostgres []string // runuser prefix: PostgreSQL refuses to run as root
}

func pgBinDir(t testing.TB) string {
	if d := os.Getenv("HOLDFAST_PG_BIN"); d != "" {
		return d
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool {
		vi, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[i])))
		vj, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[j])))
		return vi < vj
	})
	for i := len(dirs) - 1; i >= 0; i-- {
		if _, err := os.Stat(filepath.Join(dirs[i], "initdb")); err == nil {
			return dirs[i]
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(p)
	}
	t.Fatal("chaos: PostgreSQL's server programs (initdb, pg_ctl) are not installed; scripts/services.sh installs them")
	return ""
}

func startPostgres(t testing.TB) *postgresServer {
	pg := newPostgresServer(t)
	pg.cmd("initdb", "-D", pg.data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
	pg.start()
	return pg
}

// newPostgresServer makes a home for a cluster (owned by the postgres
// user when running as root) on a free port, removed at the end.
func newPostgresServer(t testing.TB) *postgresServer {
	dir, err := os.MkdirTemp("", "holdfast-chaos-pg-")
	if err != nil {
		t.Fatal(err)
	}
	pg := &postgresServer{t: t, bin: pgBinDir(t), data: filepath.Join(dir, "data"), port: freePort(t)}
	if os.Geteuid() == 0 {
		pg.asPostgres = []string{"runuser", "-u", "postgres", "--"}
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatal("chaos: running as root needs the postgres user: ", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		pg.ctl("stop", "-m", "immediate")
		os.RemoveAll(dir)
	})
	return pg
}

// startStandby makes a streaming standby of primary (pg_basebackup -R)
// and starts it; from then on the primary acknowledges a commit only once
// the standby has it (synchronous_standby_names), as a production pair
// that must not lose a confirmed booking runs.
func startStandby(t testing.TB, primary *postgresServer) *postgresServer {
	sb := newPostgresServer(t)
	sb.cmd("pg_basebackup", "-D", sb.data, "-h", "127.0.0.1", "-p", strconv.Itoa(primary.port), "-U", "postgres", "-R", "-X", "stream", "--no-sync")
	sb.start()
	// Set after the copy: the standby, once promoted, must not wait for
	// a standby of its own.
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, primary.url("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for _, sql := range []string{`ALTER SYSTEM SET synchronous_standby_names = '*'`, `SELECT pg_reload_conf()`} {
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		var sync bool
		if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_stat_replication WHERE sync_state = 'sync')`).Scan(&sync); err != nil {
			t.Fatal(err)
		}
		if sync {
			return sb
		}
		if time.Now().After(deadline) {
			t.Fatal("chaos: the standby did not become synchronous within 30 s")
		}
	}
}

// promote makes a standby the primary.
func (pg *postgresServer) promote() {
	pg.cmd("pg_ctl", "-D", pg.data, "-w", "promote")
}

func (pg *postgresServer) cmd(prog string, args ...string) string {
	full := append(append([]string{}, pg.asPostgres...), filepath.Join(pg.bin, prog))
	full = append(full, args...)
	return run(pg.t, full[0], full[1:]...)
}

// ctl runs pg_ctl, ignoring failure (used to stop a cluster that may be down).
func (pg *postgresServer) ctl(args ...string) {
	full := append(append([]string{}, pg.asPostgres...), filepath.Join(pg.bin, "pg_ctl"), "-D", pg.data, "-w")
	_ = exec.Command(full[0], append(full[1:], args...)...).Run()
}

func (pg *postgresServer) start() {
	pg.cmd("pg_ctl", "-D", pg.data, "-l", filepath.Join(pg.data, "log"), "-w", "-t", "60", "-o",
		fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c max_connections=200", pg.port, pg.data), "start")
}

// crash stops PostgreSQL the way a power cut would: no checkpoint, crash
// recovery at the next start.
func (pg *postgresServer) crash() {
	pg.cmd("pg_ctl", "-D", pg.data, "-w", "stop", "-m", "immediate")
}

func (pg *postgresServer) addr() string { return fmt.Sprintf("127.0.0.1:%d", pg.port) }

func (pg *postgresServer) url(db string) string {
	return fmt.Sprintf("postgres://postgres@%s/%s?sslmode=disable", pg.addr(), db)
}

func (pg *postgresServer) createDatabase(ctx context.Context, name string) {
	conn, err := pgx.Connect(ctx, pg.url("postgres"))
	if err != nil {
		pg.t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		pg.t.Fatal(err)
	}
}

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
	r := &redisServer{t: t, port: freePort(t), dir: t.TempDir()}
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
