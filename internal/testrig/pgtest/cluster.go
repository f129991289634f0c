package pgtest

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Clusters of a test's own: a throwaway PostgreSQL it may crash, stop,
// give a standby or settings the shared test server lacks.

// FreePort asks the kernel for a loopback port nobody uses now.
func FreePort(t testing.TB) int {
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

func settingFlags(settings []string) string {
	var b strings.Builder
	for _, s := range settings {
		b.WriteString(" -c " + s)
	}
	return b.String()
}

// Cluster is a throwaway PostgreSQL cluster a test owns.
type Cluster struct {
	t          testing.TB
	bin, data  string
	port       int
	asPostgres []string // runuser prefix: PostgreSQL refuses to run as root
	settings   []string // name=value, given to the server as -c
	schemas    atomic.Int64
}

func BinDir(t testing.TB) string {
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
	t.Fatal("pgtest: PostgreSQL's server programs (initdb, pg_ctl) are not installed; scripts/services.sh installs them")
	return ""
}

func StartCluster(t testing.TB, settings ...string) *Cluster {
	pg := newCluster(t)
	pg.settings = settings
	pg.Cmd("initdb", "-D", pg.data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
	pg.Start()
	return pg
}

// newCluster makes a home for a cluster (owned by the postgres
// user when running as root) on a free port, removed at the end.
func newCluster(t testing.TB) *Cluster {
	dir, err := os.MkdirTemp("", "holdfast-chaos-pg-")
	if err != nil {
		t.Fatal(err)
	}
	pg := &Cluster{t: t, bin: BinDir(t), data: filepath.Join(dir, "data"), port: FreePort(t)}
	if os.Geteuid() == 0 {
		pg.asPostgres = []string{"runuser", "-u", "postgres", "--"}
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatal("pgtest: running as root needs the postgres user: ", err)
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

// StartStandby makes a streaming standby of primary (pg_basebackup -R)
// and starts it; from then on the primary acknowledges a commit only once
// the standby has it (synchronous_standby_names), as a production pair
// that must not lose a confirmed booking runs.
func StartStandby(t testing.TB, primary *Cluster) *Cluster {
	sb := newCluster(t)
	sb.Cmd("pg_basebackup", "-D", sb.data, "-h", "127.0.0.1", "-p", strconv.Itoa(primary.port), "-U", "postgres", "-R", "-X", "stream", "--no-sync", "--checkpoint=fast")
	sb.Start()
	// Set after the copy: the standby, once promoted, must not wait for
	// a standby of its own.
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, primary.URL("postgres"))
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
			t.Fatal("pgtest: the standby did not become synchronous within 30 s")
		}
	}
}

// promote makes a standby the primary.
func (pg *Cluster) Promote() {
	pg.Cmd("pg_ctl", "-D", pg.data, "-w", "promote")
}

func (pg *Cluster) Cmd(prog string, args ...string) string {
	full := append(append([]string{}, pg.asPostgres...), filepath.Join(pg.bin, prog))
	full = append(full, args...)
	return run(pg.t, full[0], full[1:]...)
}

// ctl runs pg_ctl, ignoring failure (used to stop a cluster that may be down).
func (pg *Cluster) ctl(args ...string) {
	full := append(append([]string{}, pg.asPostgres...), filepath.Join(pg.bin, "pg_ctl"), "-D", pg.data, "-w")
	_ = exec.Command(full[0], append(full[1:], args...)...).Run()
}

func (pg *Cluster) Start() {
	pg.Cmd("pg_ctl", "-D", pg.data, "-l", filepath.Join(pg.data, "log"), "-w", "-t", "60", "-o",
		fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c max_connections=200", pg.port, pg.data)+settingFlags(pg.settings), "start")
}

// crash stops PostgreSQL the way a power cut would: no checkpoint, crash
// recovery at the next start.
func (pg *Cluster) Crash() {
	pg.Cmd("pg_ctl", "-D", pg.data, "-w", "stop", "-m", "immediate")
}

func (pg *Cluster) Addr() string { return fmt.Sprintf("127.0.0.1:%d", pg.port) }

func (pg *Cluster) URL(db string) string {
	return fmt.Sprintf("postgres://postgres@%s/%s?sslmode=disable", pg.Addr(), db)
}

func (pg *Cluster) CreateDatabase(ctx context.Context, name string) {
	conn, err := pgx.Connect(ctx, pg.URL("postgres"))
	if err != nil {
		pg.t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		pg.t.Fatal(err)
	}
}

// Schema makes a fresh schema in database db and returns a URL whose
// connections use it (search_path): a database of a test's own, cheaply.
func (pg *Cluster) Schema(t testing.TB, db string) string {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, pg.URL(db))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	name := fmt.Sprintf("s%d", pg.schemas.Add(1))
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+name); err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(pg.URL(db))
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("search_path", name)
	u.RawQuery = q.Encode()
	return u.String()
}
