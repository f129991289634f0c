package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/holdfast/holdfast/internal/testrig/pgtest"
)

// The patroni scenario's cluster: one etcd member and two PostgreSQL
// nodes under Patroni, as docs/scaling.md tells users to run them. Each
// node is a "machine" the harness can kill (Patroni and its PostgreSQL
// together, as a dead host) or freeze (SIGSTOP of both, as a host cut off
// from everything), on loopback ports of its own.

// Patroni's timing. A leader key lives ttl seconds unless its holder
// renews it (every loop_wait); a node that cannot reach etcd for
// retry_timeout demotes itself. loop_wait + 2 × retry_timeout ≤ ttl, as
// Patroni's documentation asks. Production runs 30/10/10; these are short
// so that a failover fits in a storm.
const (
	patroniTTL       = 8
	patroniLoopWait  = 1
	patroniRetryTime = 3
)

type patroniCluster struct {
	t        testing.TB
	dcs      string // Patroni's configuration section: etcd (v2 API) or etcd3
	dir      string
	etcd     *exec.Cmd
	etcdPort int
	nodes    []*patroniNode
	cred     *syscall.Credential
}

type patroniNode struct {
	c       *patroniCluster
	name    string
	pgPort  int
	apiPort int
	data    string
	config  string
	logPath string
	cmd     *exec.Cmd
	waited  chan struct{}
}

// needPatroni finds the programs, or fails: scripts/chaos.sh installs them.
func needPatroni(t testing.TB) {
	for _, prog := range []string{"patroni", "etcd"} {
		if _, err := exec.LookPath(prog); err != nil {
			t.Fatalf("chaos: %s is not installed; scripts/chaos.sh installs it (Debian packages patroni, etcd-server)", prog)
		}
	}
}

// patroniDCS is how Patroni talks to etcd: its v2 API (section etcd) by
// default. Patroni before 3.0.3 (Debian 12 ships 3.0.2) overwrites the
// leader key unconditionally on the v3 API (section etcd3) when its own
// lease has lapsed: a leader frozen past the TTL, thawed, takes the lead
// back from the node Patroni promoted meanwhile, and what that node
// acknowledged is lost (patroni/patroni#2689). CHAOS_PATRONI_DCS=etcd3
// shows it; the scenario then fails, as it must.
func patroniDCS(t testing.TB) string {
	switch v := os.Getenv("CHAOS_PATRONI_DCS"); v {
	case "", "etcd":
		return "etcd"
	case "etcd3":
		return v
	default:
		t.Fatalf("CHAOS_PATRONI_DCS=%q: want etcd or etcd3", v)
		return ""
	}
}

func startPatroni(t testing.TB, logDir, scenario string) *patroniCluster {
	needPatroni(t)
	dir, err := os.MkdirTemp("", "holdfast-chaos-patroni-")
	if err != nil {
		t.Fatal(err)
	}
	c := &patroniCluster{t: t, dir: dir, etcdPort: pgtest.FreePort(t), dcs: patroniDCS(t)}
	if os.Geteuid() == 0 {
		// PostgreSQL refuses to run as root: Patroni, and so its
		// PostgreSQL, run as the postgres user.
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatal("chaos: running as root needs the postgres user: ", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		c.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(c.stop)
	peer := pgtest.FreePort(t)
	etcdLog, err := os.Create(filepath.Join(logDir, scenario+"-etcd.log"))
	if err != nil {
		t.Fatal(err)
	}
	client := fmt.Sprintf("http://127.0.0.1:%d", c.etcdPort)
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", peer)
	c.etcd = exec.Command("etcd", "--name", "e1", "--data-dir", filepath.Join(dir, "etcd"),
		"--listen-client-urls", client, "--advertise-client-urls", client,
		"--listen-peer-urls", peerURL, "--initial-advertise-peer-urls", peerURL,
		"--initial-cluster", "e1="+peerURL, "--initial-cluster-state", "new", "--enable-v2=true")
	c.etcd.Stdout, c.etcd.Stderr = etcdLog, etcdLog
	if err := c.etcd.Start(); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		n := &patroniNode{c: c, name: fmt.Sprintf("node%d", i+1), pgPort: pgtest.FreePort(t), apiPort: pgtest.FreePort(t),
			logPath: filepath.Join(logDir, fmt.Sprintf("%s-%s.log", scenario, fmt.Sprintf("node%d", i+1)))}
		n.data = filepath.Join(dir, n.name)
		n.config = filepath.Join(dir, n.name+".yml")
		if err := os.WriteFile(n.config, []byte(n.yaml()), 0o644); err != nil {
			t.Fatal(err)
		}
		os.Remove(n.logPath)
		c.nodes = append(c.nodes, n)
	}
	// The first bootstraps the cluster (initdb) and leads; the second
	// copies it and becomes its synchronous standby.
	c.nodes[0].start()
	if _, err := c.waitLeader(60*time.Second, nil); err != nil {
		t.Fatalf("chaos: patroni did not elect a leader: %v (logs: %s)", err, c.nodes[0].logPath)
	}
	c.nodes[1].start()
	if err := c.waitSync(90 * time.Second); err != nil {
		t.Fatalf("chaos: patroni's second node did not become a synchronous standby: %v (logs: %s)", err, c.nodes[1].logPath)
	}
	return c
}

// yaml is the node's Patroni configuration. synchronous_mode: a commit is
// acknowledged only once the standby has it, and only a synchronous
// standby may be promoted, so a failover loses no acknowledged commit.
// A node that comes back from a crash or a partition rewinds (or, if it
// cannot, copies the leader afresh) and rejoins as a standby.
func (n *patroniNode) yaml() string {
	bin := pgtest.BinDir(n.c.t)
	return fmt.Sprintf(`scope: holdfast-chaos
name: %[1]s
log:
  level: INFO
restapi:
  listen: 127.0.0.1:%[2]d
  connect_address: 127.0.0.1:%[2]d
%[12]s:
  hosts: 127.0.0.1:%[3]d
bootstrap:
  dcs:
    ttl: %[4]d
    loop_wait: %[5]d
    retry_timeout: %[6]d
    maximum_lag_on_failover: 1048576
    synchronous_mode: true
    postgresql:
      use_pg_rewind: true
      use_slots: true
      parameters:
        max_connections: 200
        wal_log_hints: "on"
        max_wal_senders: 10
        max_replication_slots: 10
  initdb:
    - encoding: UTF8
    - auth: trust
    - no-sync
postgresql:
  listen: 127.0.0.1:%[7]d
  connect_address: 127.0.0.1:%[7]d
  data_dir: %[8]s
  bin_dir: %[9]s
  pgpass: %[10]s
  remove_data_directory_on_rewind_failure: true
  remove_data_directory_on_diverged_timelines: true
  authentication:
    superuser:
      username: postgres
    replication:
      username: postgres
    rewind:
      username: postgres
  parameters:
    unix_socket_directories: %[11]s
  pg_hba:
    - local all all trust
    - host all all 127.0.0.1/32 trust
    - host replication all 127.0.0.1/32 trust
`, n.name, n.apiPort, n.c.etcdPort, patroniTTL, patroniLoopWait, patroniRetryTime,
		n.pgPort, n.data, bin, filepath.Join(n.c.dir, n.name+".pgpass"), n.c.dir, n.c.dcs)
}

func (n *patroniNode) addr() string { return fmt.Sprintf("127.0.0.1:%d", n.pgPort) }

func (n *patroniNode) url(db string) string {
	return fmt.Sprintf("postgres://postgres@%s/%s?sslmode=disable&connect_timeout=5", n.addr(), db)
}

// start runs Patroni, as the postgres user when the harness is root.
func (n *patroniNode) start() {
	logf, err := os.OpenFile(n.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		n.c.t.Fatal(err)
	}
	n.cmd = exec.Command("patroni", n.config)
	n.cmd.Dir = n.c.dir
	n.cmd.Stdout, n.cmd.Stderr = logf, logf
	n.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: n.c.cred}
	if err := n.cmd.Start(); err != nil {
		n.c.t.Fatal(err)
	}
	n.waited = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) {
		_ = cmd.Wait()
		logf.Close()
		close(done)
	}(n.cmd, n.waited)
}

// signal sends sig to the whole machine: Patroni, then PostgreSQL's
// postmaster, then every process under either (backends, WAL senders
// and receivers), each by pid (pgtest.Descendants): the postmaster is not
// Patroni's child, and each backend leads a session of its own. Patroni
// first, so that it cannot start a PostgreSQL between the two.
func (n *patroniNode) signal(sig syscall.Signal) {
	var roots []int
	if n.cmd != nil && n.cmd.Process != nil {
		roots = append(roots, n.cmd.Process.Pid)
	}
	roots = append(roots, pgtest.Postmaster(n.data))
	for _, pid := range pgtest.Descendants(roots) {
		_ = syscall.Kill(pid, sig)
	}
}

// kill is a dead machine: Patroni and PostgreSQL killed at once, no
// shutdown, no demotion, the leader key left to expire.
func (n *patroniNode) kill() {
	pm := pgtest.Postmaster(n.data)
	n.signal(syscall.SIGCONT)
	n.signal(syscall.SIGKILL)
	if n.cmd != nil {
		<-n.waited
	}
	// The postmaster is not our child: wait until it is gone.
	for deadline := time.Now().Add(10 * time.Second); pm > 0 && syscall.Kill(pm, 0) == nil && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
}

// role asks the node's Patroni what it is: "master" or "primary" (the
// word changed in Patroni 3.1), "replica", or "" if it does not answer.
func (n *patroniNode) role() string {
	c := &http.Client{Timeout: time.Second}
	resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d/patroni", n.apiPort))
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	var st struct {
		Role  string `json:"role"`
		State string `json:"state"`
	}
	if json.NewDecoder(resp.Body).Decode(&st) != nil || st.State != "running" {
		return ""
	}
	return st.Role
}

func isPrimary(role string) bool { return role == "master" || role == "primary" }

// isSyncStandby asks the node's Patroni whether the cluster's /sync key
// names it the synchronous standby (GET /sync: 200 only then).
func (n *patroniNode) isSyncStandby() bool {
	c := &http.Client{Timeout: time.Second}
	resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d/sync", n.apiPort))
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// waitLeader waits until a node other than not leads, and its PostgreSQL
// takes writes.
func (c *patroniCluster) waitLeader(timeout time.Duration, not *patroniNode) (*patroniNode, error) {
	deadline := time.Now().Add(timeout)
	for {
		for _, n := range c.nodes {
			if n != not && isPrimary(n.role()) && n.writable() {
				return n, nil
			}
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("no leader within %s", timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// writable: the node's PostgreSQL answers and is not in recovery.
func (n *patroniNode) writable() bool {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, n.url("postgres"))
	if err != nil {
		return false
	}
	defer conn.Close(ctx)
	var recovery bool
	return conn.QueryRow(ctx, `SELECT pg_is_in_recovery()`).Scan(&recovery) == nil && !recovery
}

// waitSync waits until the leader has a synchronous standby streaming
// from it, and Patroni has recorded it as the synchronous standby (its
// /sync key in etcd): only then may Patroni promote it, so only then is
// the pair safe to lose a node again. PostgreSQL reports the standby
// sync a loop of Patroni's before the key names it; a leader lost in
// between is, rightly, not replaced (a run froze it 50 ms too soon).
func (c *patroniCluster) waitSync(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		if leader, err := c.waitLeader(time.Second, nil); err == nil && c.other(leader).isSyncStandby() {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			conn, err := pgx.Connect(ctx, leader.url("postgres"))
			if err == nil {
				var sync bool
				if conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_stat_replication WHERE sync_state = 'sync' AND state = 'streaming')`).Scan(&sync) == nil && sync {
					conn.Close(ctx)
					cancel()
					return nil
				}
				conn.Close(ctx)
			}
			cancel()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no synchronous standby within %s", timeout)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (c *patroniCluster) leader() *patroniNode {
	n, err := c.waitLeader(30*time.Second, nil)
	if err != nil {
		c.t.Fatalf("chaos: patroni has no leader: %v", err)
	}
	return n
}

func (c *patroniCluster) other(n *patroniNode) *patroniNode {
	if c.nodes[0] == n {
		return c.nodes[1]
	}
	return c.nodes[0]
}

func (c *patroniCluster) createDatabase(ctx context.Context, name string) {
	conn, err := pgx.Connect(ctx, c.leader().url("postgres"))
	if err != nil {
		c.t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		c.t.Fatal(err)
	}
}

// fenced checks, after the faults, that exactly one node takes writes
// and the other is its standby, streaming: the node that lost the lead
// came back as a standby, not as a second primary.
func (c *patroniCluster) fenced() []string {
	var bad []string
	if err := c.waitSync(60 * time.Second); err != nil {
		bad = append(bad, "after the faults: "+err.Error())
	}
	writable := 0
	for _, n := range c.nodes {
		if n.writable() {
			writable++
		}
	}
	if writable != 1 {
		bad = append(bad, fmt.Sprintf("%d nodes take writes after the faults (want exactly 1)", writable))
	}
	return bad
}

func (c *patroniCluster) stop() {
	for _, n := range c.nodes {
		n.kill()
	}
	if c.etcd != nil && c.etcd.Process != nil {
		_ = c.etcd.Process.Kill()
		_ = c.etcd.Wait()
	}
	os.RemoveAll(c.dir)
}

// thaw ends a node's freeze. Raw (CHAOS_PATRONI_FREEZE=raw): every
// process continues at once, as a paused machine resumes — the old
// primary then runs for some tens of milliseconds before Patroni demotes
// it, and answers reads through connections pooled before the freeze as
// if it still led (the harness saw a cancel answered not_found for a
// hold the new leader had; writes it takes are never acknowledged, its
// standby being the new leader). Fenced (the default): what Patroni's
// watchdog does to a machine that stopped renewing its leader key — it
// resets it before anything on it runs again; the machine boots and its
// Patroni rejoins. (Continuing Patroni before its PostgreSQL is no
// model of it: Patroni's loop may itself be waiting on a query to its
// frozen PostgreSQL.)
func (n *patroniNode) thaw() (how string) {
	if os.Getenv("CHAOS_PATRONI_FREEZE") == "raw" {
		n.signal(syscall.SIGCONT)
		return "raw: every process continued at once"
	}
	n.kill()
	n.start()
	return "fenced: reset by the watchdog, as Patroni's watchdog would, and started again"
}
