package chaos

import (
	"context"
	"database/sql"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/jackc/pgx/v5"
	_ "modernc.org/sqlite" // the sqlite-kill scenario reads its file

	"github.com/holdfast/holdfast"
	hfhttp "github.com/holdfast/holdfast/http"
	"github.com/holdfast/holdfast/internal/metrics"
	"github.com/holdfast/holdfast/internal/testrig/pgtest"
)

var (
	enabled   = flag.Bool("chaos", false, "run the chaos harness (make chaos): minutes, several processes")
	only      = flag.String("chaos.only", "", "comma-separated scenario names to run (default: all)")
	artifacts = flag.String("chaos.artifacts", "../../.artifacts/chaos", "where failing histories (HTML) and the report go")
)

// stormDuration is each scenario's storm: CHAOS_DURATION for a soak.
func stormDuration(t *testing.T) time.Duration {
	if v := os.Getenv("CHAOS_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("CHAOS_DURATION: %v", err)
		}
		return d
	}
	// Long enough for every scenario's faults to play out and the
	// servers to recover between them, short enough for `make test` to
	// stay under its budget with sixteen scenarios. Rare interleavings
	// need longer (a 40 s soak once found a bug that 15 s storms had
	// not): soak with CHAOS_DURATION (make soak).
	return 12 * time.Second
}

const (
	instances = 3
	clients   = 64
	adminKey  = "chaos-admin-key-0123456789"
	lockTTL   = time.Second
)

// scenario is one storm with its faults.
type scenario struct {
	name     string
	strategy string
	skews    []time.Duration // per instance: clock offsets
	length   float64         // × the storm duration
	atLeast  time.Duration   // the storm's floor: what its faults need to play out
	faults   func(h *harness, d time.Duration)
	// broken: the build is wrong on purpose; the checks must catch it.
	broken bool
	// webhooks: a flaky receiver gets every event, and the storm's
	// deliveries are checked after it.
	webhooks bool
	// queue: a sale behind a waiting room runs beside the storm, and its
	// places and admissions are checked after it.
	queue bool
	// failover: a primary of its own with a synchronous standby; the
	// servers name both hosts (target_session_attrs=read-write).
	failover bool
	// shards: three primaries of its own, the servers spread over them
	// (--shard); festival passes across two shards run beside the storm.
	shards bool
	// sqlite: one server on a SQLite file, the embedded default, instead
	// of three on PostgreSQL; the file is checked with integrity_check.
	sqlite bool
	// patroni: two PostgreSQL nodes under Patroni and etcd of its own
	// (patroni.go), synchronous_mode on; the servers name both hosts.
	patroni bool
	// unbatched: the servers decide every claim and change in a
	// transaction of its own (--coalesce=false), the path every request
	// takes when a batch cannot have it.
	unbatched bool
	// batched: the servers must report batches (the twin of an unbatched
	// scenario, so that the pair compares what it says it does).
	batched bool
}

// killTwo kills -9 one server a quarter into the storm and another at 60 %.
func killTwo(h *harness, d time.Duration) {
	first := h.randomInstance()
	for k, at := range []float64{0.25, 0.6} {
		h.at(d, at)
		in := first
		if k > 0 { // another one
			in = h.instances[(first.n+1+h.rng.IntN(len(h.instances)-1))%len(h.instances)]
		}
		h.kill9(in)
	}
}

// crashPostgresOnce stops PostgreSQL -m immediate 30 % into the storm.
func crashPostgresOnce(h *harness, d time.Duration) {
	h.at(d, 0.3)
	h.crashPostgres()
}

var scenarios = []scenario{
	{name: "kill-9", strategy: "atomic", batched: true, faults: killTwo},
	// The same with batching off: every guarantee holds on both ways.
	{name: "kill-9-unbatched", strategy: "atomic", unbatched: true, faults: killTwo},
	{name: "pause-past-lock-ttl", strategy: "redislock", faults: func(h *harness, d time.Duration) {
		h.at(d, 0.3)
		h.pause(h.randomInstance())
	}},
	{name: "postgres-crash", strategy: "atomic", batched: true, faults: crashPostgresOnce},
	{name: "postgres-crash-unbatched", strategy: "atomic", unbatched: true, faults: crashPostgresOnce},
	{name: "redis-kill-flush", strategy: "redislock", faults: func(h *harness, d time.Duration) {
		h.at(d, 0.25)
		h.killRedis()
		h.at(d, 0.6)
		h.flushRedis()
	}},
	{name: "network", strategy: "atomic", faults: func(h *harness, d time.Duration) {
		h.at(d, 0.2)
		h.network(h.instances[1], "latency", `{"latency":150,"jitter":50}`, 3*time.Second, false)
		h.at(d, 0.45)
		h.network(h.instances[2], "timeout", `{"timeout":0}`, 3*time.Second, false)
		h.at(d, 0.7)
		h.network(h.instances[0], "reset_peer", `{"timeout":0}`, 2*time.Second, false)
	}},
	{name: "webhooks", strategy: "atomic", webhooks: true, faults: func(h *harness, d time.Duration) {
		for _, at := range []float64{0.3, 0.65} {
			h.at(d, at)
			h.kill9(h.randomInstance())
		}
	}},
	{name: "queue", strategy: "atomic", queue: true, faults: func(h *harness, d time.Duration) {
		for _, at := range []float64{0.25, 0.45, 0.7} {
			h.at(d, at)
			h.kill9(h.randomInstance())
		}
	}},
	{name: "failover", strategy: "atomic", failover: true, faults: func(h *harness, d time.Duration) {
		h.at(d, 0.4)
		h.failover()
	}},
	// A real failover manager: the primary's machine dies (Patroni and
	// PostgreSQL killed -9 together) and Patroni promotes the synchronous
	// standby; later the new primary freezes (SIGSTOP of both) past the
	// leader key's TTL, Patroni elects the other node, and the frozen one,
	// thawed, must come back as a standby, never as a second primary.
	{name: "patroni", strategy: "atomic", patroni: true, length: 2, atLeast: 50 * time.Second, faults: func(h *harness, d time.Duration) {
		h.at(d, 0.15)
		h.patroniKill()
		h.at(d, 0.55)
		h.patroniFreeze()
	}},
	{name: "shard-crash", strategy: "atomic", shards: true, faults: func(h *harness, d time.Duration) {
		h.at(d, 0.25)
		h.crashShard(len(h.shards) - 1)
		h.at(d, 0.5)
		h.crashShard(0)
		h.at(d, 0.75)
		h.crashPostgres() // the catalog, where holds across shards are decided
	}},
	// The embedded default: one server on a SQLite file, killed -9 every
	// few seconds and started again on the same file. Every acknowledged
	// change must survive, and a retry under its key get the recorded
	// answer (the clients retry with the same Idempotency-Key).
	// Six kills, each restarted a second later: at least 18 s, so the
	// server serves between them.
	{name: "sqlite-kill", strategy: "atomic", sqlite: true, atLeast: 18 * time.Second, faults: func(h *harness, d time.Duration) {
		for at := 0.12; at < 0.9; at += 0.13 {
			h.at(d, at)
			h.kill9(h.instances[0])
		}
	}},
	{name: "clock-skew", strategy: "atomic", skews: []time.Duration{0, 7 * time.Minute, -4 * time.Minute}},
	{name: "all-at-once", strategy: "redislock", skews: []time.Duration{0, 7 * time.Minute, -4 * time.Minute}, length: 2,
		faults: func(h *harness, d time.Duration) {
			h.at(d, 0.1)
			h.network(h.instances[1], "latency", `{"latency":150,"jitter":50}`, 2*time.Second, false)
			h.at(d, 0.2)
			h.kill9(h.randomInstance())
			h.at(d, 0.35)
			h.pause(h.randomInstance())
			h.at(d, 0.5)
			h.crashPostgres()
			h.at(d, 0.65)
			h.killRedis()
			h.at(d, 0.75)
			h.flushRedis()
			h.at(d, 0.85)
			h.network(h.instances[2], "timeout", `{"timeout":0}`, 2*time.Second, true)
		}},
	// The checks must bite: the unsafe strategy (read, then write the
	// count back) loses updates under exactly this load — on PostgreSQL,
	// through a Patroni failover, and on the embedded default.
	{name: "broken-build-unsafe", strategy: "unsafe", broken: true},
	{name: "broken-patroni-unsafe", strategy: "unsafe", broken: true, patroni: true, length: 0.8, atLeast: 20 * time.Second, faults: func(h *harness, d time.Duration) {
		h.at(d, 0.3)
		h.patroniKill()
	}},
	{name: "broken-sqlite-kill-unsafe", strategy: "unsafe", broken: true, sqlite: true, length: 0.6, faults: func(h *harness, d time.Duration) {
		for _, at := range []float64{0.3, 0.6} {
			h.at(d, at)
			h.kill9(h.instances[0])
		}
	}},
}

// result is one scenario's line in the report.
type result struct {
	name, strategy string
	ops, unknown   int
	faults         []string
	busy, netErrs  int64
	inFlight       int64
	recover        time.Duration
	linear         string
	dbBad          []string
	htmls          []string
	broken         bool
}

func TestChaos(t *testing.T) {
	if !*enabled {
		t.Skip("the chaos harness runs with -chaos (make chaos)")
	}
	if err := os.MkdirAll(*artifacts, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "holdfast")
	build := exec.Command("go", "build", "-o", bin, "github.com/holdfast/holdfast/cmd/holdfast")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building holdfast: %v\n%s", err, out)
	}
	pg := pgtest.StartCluster(t)
	rd := startRedis(t)
	d := stormDuration(t)
	var results []result
	for _, sc := range scenarios {
		if *only != "" && !slices.Contains(strings.Split(*only, ","), sc.name) {
			continue
		}
		t.Run(sc.name, func(t *testing.T) {
			h := &harness{t: t, pg: pg, rd: rd, bin: bin, px: newProxies(), rng: rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))}
			r := h.scenario(sc, d)
			results = append(results, r)
			broken := r.linear != "ok" || len(r.dbBad) > 0
			switch {
			case sc.broken && !broken:
				t.Errorf("a deliberately broken build passed every check: the checks do not bite")
			case !sc.broken && broken:
				t.Errorf("linearizability: %s; database: %s; histories: %v", r.linear, strings.Join(r.dbBad, "; "), r.htmls)
			}
		})
	}
	report(t, results, d)
}

type harness struct {
	t          *testing.T
	pg         *pgtest.Cluster
	standby    *pgtest.Cluster   // the failover scenario's
	patroni    *patroniCluster   // the patroni scenario's
	rec        *recorder         // the storm's answers, as they come
	shards     []*pgtest.Cluster // the shard-crash scenario's, beside pg (the catalog)
	rd         *redisServer
	px         *proxies
	bin        string
	rng        *rand.Rand
	instances  []*instance
	mu         sync.Mutex
	faults     []string
	maxRecover time.Duration
	stormStart time.Time
}

func (h *harness) fault(format string, args ...any) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.faults = append(h.faults, fmt.Sprintf(format, args...))
}

// at sleeps until frac of the storm has passed.
func (h *harness) at(d time.Duration, frac float64) {
	time.Sleep(time.Until(h.stormStart.Add(time.Duration(frac * float64(d)))))
}

func (h *harness) randomInstance() *instance { return h.instances[h.rng.IntN(len(h.instances))] }

// The faults, each healed before it returns.

func (h *harness) kill9(in *instance) {
	h.fault("kill -9 instance %d", in.n)
	in.kill9()
	time.Sleep(time.Second)
	in.start()
	h.recovered()
}

func (h *harness) pause(in *instance) {
	h.fault("SIGSTOP instance %d for %s (lock TTL %s)", in.n, 3*lockTTL, lockTTL)
	in.signal(syscall.SIGSTOP)
	time.Sleep(3 * lockTTL)
	in.signal(syscall.SIGCONT)
	h.recovered()
}

func (h *harness) crashPostgres() {
	what := ""
	if h.shards != nil {
		what = "the catalog: "
	}
	h.fault("%spg_ctl stop -m immediate, 2 s down", what)
	h.pg.Crash()
	time.Sleep(2 * time.Second)
	h.pg.Start()
	h.recovered()
}

// failover loses the primary as a dead machine does (no shutdown, no
// checkpoint) and promotes its synchronous standby; the servers find it
// by themselves among the hosts their URL names.
func (h *harness) failover() {
	h.fault("primary crashed (pg_ctl stop -m immediate), its synchronous standby promoted")
	h.pg.Crash()
	h.standby.Promote()
	h.pg, h.standby = h.standby, nil
	h.recovered()
}

// patroniKill kills the leader's machine (Patroni and PostgreSQL at
// once), waits for Patroni to promote the standby and for every server to
// write again, then brings the machine back: it must rejoin as the new
// leader's synchronous standby.
func (h *harness) patroniKill() {
	old := h.patroni.leader()
	start, busy := time.Now(), h.rec.busy.Load()
	old.kill()
	next, err := h.patroni.waitLeader(60*time.Second, old)
	if err != nil {
		h.t.Errorf("patroni did not promote %s's standby: %v (log: %s)", old.name, err, h.patroni.other(old).logPath)
		return
	}
	promoted := time.Since(start)
	waited := h.writesResume(start)
	busy = h.rec.busy.Load() - busy
	old.start()
	back := time.Now()
	if err := h.patroni.waitSync(120 * time.Second); err != nil {
		h.t.Errorf("%s did not rejoin as a synchronous standby: %v (log: %s)", old.name, err, old.logPath)
	}
	h.fault("leader %s's machine killed -9 (Patroni and PostgreSQL): %s promoted in %s, writes waited %s (503s meanwhile: %d), %s back as standby in %s",
		old.name, next.name, promoted.Round(100*time.Millisecond), waited.Round(100*time.Millisecond), busy, old.name, time.Since(back).Round(100*time.Millisecond))
	h.recovered()
}

// patroniFreeze freezes the leader's machine (SIGSTOP of Patroni and
// PostgreSQL) past the leader key's TTL: its connections hang rather than
// fail, and Patroni elects the other node. Then the frozen machine is
// fenced (see thaw) and must rejoin as a standby; no write it took may
// have been acknowledged (synchronous_mode: its standby is now the
// leader and acknowledges nothing).
func (h *harness) patroniFreeze() {
	old := h.patroni.leader()
	start, busy := time.Now(), h.rec.busy.Load()
	old.signal(syscall.SIGSTOP)
	next, err := h.patroni.waitLeader(60*time.Second, old)
	if err != nil {
		old.signal(syscall.SIGCONT)
		h.t.Errorf("patroni did not elect %s's standby: %v (log: %s)", old.name, err, h.patroni.other(old).logPath)
		return
	}
	promoted := time.Since(start)
	waited := h.writesResume(start)
	busy = h.rec.busy.Load() - busy
	how := old.thaw()
	back := time.Now()
	if err := h.patroni.waitSync(120 * time.Second); err != nil {
		h.t.Errorf("%s did not rejoin as a synchronous standby: %v (log: %s)", old.name, err, old.logPath)
	}
	h.fault("leader %s frozen (SIGSTOP of Patroni and PostgreSQL): %s elected in %s, writes waited %s (503s meanwhile: %d); thawed (%s), %s back as standby in %s",
		old.name, next.name, promoted.Round(100*time.Millisecond), waited.Round(100*time.Millisecond), busy, how, old.name, time.Since(back).Round(100*time.Millisecond))
	h.recovered()
}

// writesResume waits until every server has taken a write again (an
// admin creates a pool through it) and returns how long after start.
func (h *harness) writesResume(start time.Time) time.Duration {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	for _, in := range h.instances {
		c := hfhttp.NewClient(in.url(), adminKey)
		for try := 0; ; try++ {
			id := fmt.Sprintf("probe-%d-%d-%d", in.n, time.Now().UnixNano(), try)
			if _, err := c.CreatePool(ctx, holdfast.Pool{ID: id, Capacity: 1}); err == nil {
				break
			} else if ctx.Err() != nil {
				h.t.Errorf("instance %d took no write within 90 s: %v", in.n, err)
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return time.Since(start)
}

// crashShard kills shard i's PostgreSQL (the --shard databases, from 0)
// as a dead machine does, for 2 s.
func (h *harness) crashShard(i int) {
	h.fault("shard %d: pg_ctl stop -m immediate, 2 s down", i+1)
	h.shards[i].Crash()
	time.Sleep(2 * time.Second)
	h.shards[i].Start()
	h.recovered()
}

func (h *harness) killRedis() {
	h.fault("kill Redis, 1 s down")
	h.rd.kill()
	time.Sleep(time.Second)
	h.rd.start()
	h.recovered()
}

func (h *harness) flushRedis() {
	h.fault("FLUSHALL")
	if err := h.rd.flush(); err != nil {
		h.t.Errorf("flush: %v", err)
	}
	h.recovered()
}

// network puts a toxic on an instance's PostgreSQL link (and its Redis
// link with redis) for a while, then heals it.
func (h *harness) network(in *instance, typ, attrs string, dur time.Duration, redis bool) {
	link, name := in.pgLink, "PostgreSQL"
	if redis {
		link, name = in.rdLink, "Redis"
	}
	h.fault("%s on instance %d's %s link for %s", typ, in.n, name, dur)
	if err := toxic(link, typ, typ, attrs); err != nil {
		h.t.Errorf("toxic: %v", err)
		return
	}
	time.Sleep(dur)
	untoxic(link, typ)
	h.recovered()
}

// recovered waits until every instance answers /readyz, and keeps the
// longest wait: after a fault heals, servers must serve again by
// themselves.
func (h *harness) recovered() {
	start := time.Now()
	for _, in := range h.instances {
		if err := waitReady(in.url(), 30*time.Second); err != nil {
			h.t.Errorf("instance %d did not recover within 30 s: %v (log: %s)", in.n, err, in.logPath)
		}
	}
	h.mu.Lock()
	h.maxRecover = max(h.maxRecover, time.Since(start))
	h.mu.Unlock()
}

func (h *harness) scenario(sc scenario, d time.Duration) result {
	t := h.t
	ctx := context.Background()
	dbName := "chaos_" + strings.ReplaceAll(sc.name, "-", "_")
	if sc.failover {
		shared := h.pg
		h.pg = pgtest.StartCluster(t)
		h.pg.CreateDatabase(ctx, dbName)
		h.standby = pgtest.StartStandby(t, h.pg)
		defer func() { h.pg, h.standby = shared, nil }()
	} else if sc.shards {
		shared := h.pg
		h.pg = pgtest.StartCluster(t, "max_prepared_transactions=100")
		h.pg.CreateDatabase(ctx, dbName)
		for range 2 {
			sh := pgtest.StartCluster(t, "max_prepared_transactions=100")
			sh.CreateDatabase(ctx, dbName)
			h.shards = append(h.shards, sh)
		}
		defer func() { h.pg, h.shards = shared, nil }()
	} else if sc.patroni {
		h.patroni = startPatroni(t, *artifacts, sc.name)
		h.patroni.createDatabase(ctx, dbName)
		defer func() { h.patroni = nil }()
	} else if !sc.sqlite {
		h.pg.CreateDatabase(ctx, dbName)
	}
	// checkURL: where the checks read, directly (not through the proxies).
	checkURL := func() string { return h.pg.URL(dbName) }
	if h.patroni != nil {
		checkURL = func() string { return h.patroni.leader().url(dbName) }
	}
	if err := h.rd.flush(); err != nil {
		t.Fatal(err)
	}
	n, sqliteFile := instances, ""
	if sc.sqlite {
		n, sqliteFile = 1, filepath.Join(t.TempDir(), "holdfast.db")
	}
	for i := range n {
		in := &instance{t: t, n: i, bin: h.bin, port: pgtest.FreePort(t), logPath: filepath.Join(*artifacts, fmt.Sprintf("%s-instance-%d.log", sc.name, i))}
		os.Remove(in.logPath)
		in.pgLink = h.px.add(t, fmt.Sprintf("%s-pg-%d", sc.name, i), h.pg.Addr())
		in.rdLink = h.px.add(t, fmt.Sprintf("%s-redis-%d", sc.name, i), h.rd.addr())
		db := fmt.Sprintf("postgres://postgres@%s/%s?sslmode=disable", in.pgLink.Listen, dbName)
		if h.patroni != nil {
			// Both nodes, through links of their own: pgx connects to
			// the one that takes writes, giving up on a frozen one after
			// connect_timeout.
			var hosts []string
			for j, node := range h.patroni.nodes {
				hosts = append(hosts, h.px.add(t, fmt.Sprintf("%s-node%d-%d", sc.name, j, i), node.addr()).Listen)
			}
			db = fmt.Sprintf("postgres://postgres@%s/%s?sslmode=disable&target_session_attrs=read-write&connect_timeout=2", strings.Join(hosts, ","), dbName)
		} else if h.standby != nil {
			// Both hosts: pgx connects to the one that takes writes.
			sbLink := h.px.add(t, fmt.Sprintf("%s-standby-%d", sc.name, i), h.standby.Addr())
			db = fmt.Sprintf("postgres://postgres@%s,%s/%s?sslmode=disable&target_session_attrs=read-write", in.pgLink.Listen, sbLink.Listen, dbName)
		}
		var shardArgs []string
		for j, sh := range h.shards {
			link := h.px.add(t, fmt.Sprintf("%s-shard%d-%d", sc.name, j, i), sh.Addr())
			shardArgs = append(shardArgs, "--shard", fmt.Sprintf("postgres://postgres@%s/%s?sslmode=disable", link.Listen, dbName))
		}
		in.args = []string{"serve", "--addr", fmt.Sprintf("127.0.0.1:%d", in.port),
			"--db", db,
			"--redis", "redis://" + in.rdLink.Listen + "/0", "--strategy", sc.strategy, "--admin-key", adminKey,
			"--request-timeout", "2s", "--sweep-interval", "250ms", "--db-conns", "12", "--max-hold-ttl", "24h",
			"--lock-ttl", lockTTL.String()}
		if sc.sqlite {
			in.args = []string{"serve", "--addr", fmt.Sprintf("127.0.0.1:%d", in.port), "--db", sqliteFile, "--strategy", sc.strategy,
				"--admin-key", adminKey, "--request-timeout", "2s", "--sweep-interval", "250ms", "--max-hold-ttl", "24h"}
		}
		in.args = append(in.args, shardArgs...)
		if sc.unbatched {
			in.args = append(in.args, "--coalesce=false")
		}
		if sc.strategy == "unsafe" {
			in.args = append(in.args, "--allow-unsafe")
			if sc.sqlite {
				// One writer serialises SQLite's writes, and the unsafe
				// read is a moment before its write: widen the moment, as
				// the lab does, so that it loses updates here too.
				in.args = append(in.args, "--think", "5ms")
			}
		}
		if sc.webhooks {
			in.args = append(in.args, webhookArgs...)
		}
		if i < len(sc.skews) && sc.skews[i] != 0 {
			in.args = append(in.args, "--clock-skew", sc.skews[i].String())
			h.fault("instance %d's clock off by %s", i, sc.skews[i])
		}
		h.instances = append(h.instances, in)
		t.Cleanup(func() { in.stop() })
		// The first migrates; the others find the schema ready.
		if err := in.startReady(60 * time.Second); err != nil {
			t.Fatalf("instance %d did not start: %v (log: %s)", i, err, in.logPath)
		}
	}
	lanes := h.setup(ctx)
	var receiver *flakyReceiver
	var webhooksFrom int64
	if sc.webhooks {
		receiver = newFlakyReceiver()
		defer receiver.srv.Close()
		conn, err := pgx.Connect(ctx, checkURL())
		if err != nil {
			t.Fatal(err)
		}
		webhooksFrom = h.registerWebhook(ctx, receiver, conn)
		conn.Close(ctx)
	}

	urls := make([]string, len(h.instances))
	for i, in := range h.instances {
		urls[i] = in.url()
	}
	rec := &recorder{}
	h.rec = rec
	drv := &driver{urls: urls, adminKey: adminKey, attempt: 3 * time.Second, budget: 20 * time.Second, rec: rec,
		http: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients}}}
	length := d
	if sc.length > 0 {
		length = time.Duration(sc.length * float64(d))
	}
	length = max(length, sc.atLeast)
	h.stormStart = time.Now()
	var queue *queueRun
	stopQueue := func() {}
	if sc.queue {
		conn, err := pgx.Connect(ctx, h.pg.URL(dbName))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		queue, stopQueue = h.startQueue(ctx, urls, length, conn)
	}
	var passes *passRun
	stopPasses := func() {}
	if sc.shards {
		passes, stopPasses = h.startPasses(ctx, drv)
	}
	stormCtx, stop := context.WithTimeout(ctx, length)
	var wg sync.WaitGroup
	for i := range clients {
		wg.Go(func() { drv.client(stormCtx, i, lanes[i%len(lanes)], i%len(h.instances)) })
	}
	if sc.faults != nil {
		sc.faults(h, length)
	}
	<-stormCtx.Done()
	stop()
	wg.Wait()
	stopQueue()
	stopPasses()
	h.recovered()

	// Checks, on the database directly (not through the proxies).
	var end int64
	for _, o := range rec.ops {
		end = max(end, o.Ret)
	}
	var conn *pgx.Conn
	var resolveDBs []checkDB
	dbArgs := []string{"--db", sqliteFile}
	if sc.sqlite {
		file, err := sql.Open("sqlite", "file:"+sqliteFile+"?_pragma=busy_timeout(10000)")
		if err != nil {
			t.Fatal(err)
		}
		defer file.Close()
		var integrity string
		if err := file.QueryRowContext(ctx, `PRAGMA integrity_check`).Scan(&integrity); err != nil || integrity != "ok" {
			t.Errorf("PRAGMA integrity_check after the kills: %q, %v", integrity, err)
		}
		h.fault("PRAGMA integrity_check: %s", integrity)
		resolveDBs = []checkDB{sqlDB{file}}
	} else {
		var err error
		if conn, err = pgx.Connect(ctx, checkURL()); err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		conns := []*pgx.Conn{conn}
		dbArgs = []string{"--db", checkURL()}
		for _, sh := range h.shards {
			c, err := pgx.Connect(ctx, sh.URL(dbName))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close(ctx)
			conns = append(conns, c)
			dbArgs = append(dbArgs, "--shard", sh.URL(dbName))
		}
		resolveDBs = pgxDBs(conns)
	}
	ops, unknown, err := resolve(ctx, resolveDBs, rec.ops)
	if err != nil {
		t.Fatal(err)
	}
	r := result{name: sc.name, strategy: sc.strategy, broken: sc.broken, ops: len(rec.ops), unknown: unknown, faults: h.faults,
		busy: rec.busy.Load(), netErrs: rec.netErrs.Load(), inFlight: rec.inFlight.Load(), recover: h.maxRecover}
	if n := rec.tooMany.Load(); n > 0 {
		r.dbBad = append(r.dbBad, fmt.Sprintf("%d answers were 429: nothing here is rate limited", n))
	}
	if n := rec.noRetryAfter.Load(); n > 0 {
		r.dbBad = append(r.dbBad, fmt.Sprintf("%d answers were 503 without Retry-After", n))
	}
	if h.patroni != nil {
		r.dbBad = append(r.dbBad, h.patroni.fenced()...)
	}
	r.linear = "ok"
	var verdicts []string
	for _, ln := range lanes {
		var laneOps []op
		for _, o := range ops {
			if o.In.Lane == ln.id {
				laneOps = append(laneOps, o)
			}
		}
		v := checkLane(ln, laneOps, end+1, filepath.Join(*artifacts, fmt.Sprintf("%s-%s.html", sc.name, ln.id)), 2*time.Minute)
		if v.result != porcupine.Ok {
			verdicts = append(verdicts, fmt.Sprintf("%s %s", ln.id, v.result))
			if v.html != "" {
				r.htmls = append(r.htmls, v.html)
			}
		}
	}
	if len(verdicts) > 0 {
		r.linear = strings.Join(verdicts, ", ")
		// The raw history too, one operation per line, for a closer look.
		var b strings.Builder
		for _, o := range ops {
			js, _ := json.Marshal(o)
			b.Write(append(js, '\n'))
		}
		_ = os.WriteFile(filepath.Join(*artifacts, sc.name+"-history.jsonl"), []byte(b.String()), 0o644)
	}
	bad, err := dbChecks(ctx, resolveDBs, h.bin, dbArgs, ops)
	if err != nil {
		t.Fatal(err)
	}
	r.dbBad = append(r.dbBad, bad...)
	if queue != nil {
		bad, summary := checkQueue(ctx, conn, queue)
		r.dbBad = append(r.dbBad, bad...)
		t.Log(summary)
		r.faults = append(r.faults, summary)
	}
	if passes != nil {
		bad, summary := checkPasses(ctx, conns(resolveDBs), passes)
		r.dbBad = append(r.dbBad, bad...)
		t.Log(summary)
		r.faults = append(r.faults, summary)
	}
	if receiver != nil {
		bad, summary := checkWebhooks(ctx, conn, receiver, webhooksFrom)
		r.dbBad = append(r.dbBad, bad...)
		t.Log(summary)
		r.faults = append(r.faults, summary)
	}
	if sc.batched || sc.unbatched {
		bad, summary := h.batchesRan(ctx, sc.batched)
		r.dbBad = append(r.dbBad, bad...)
		r.faults = append(r.faults, summary)
	}
	for _, in := range h.instances {
		in.stop()
	}
	return r
}

// batchesRan reads the servers' batch counters (/metrics): with want, some
// server must have decided claims or changes in batches; without, none.
func (h *harness) batchesRan(ctx context.Context, want bool) (bad []string, summary string) {
	var total int64
	for _, in := range h.instances {
		req, err := http.NewRequestWithContext(ctx, "GET", in.url()+"/metrics", nil)
		if err != nil {
			return []string{err.Error()}, ""
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return []string{fmt.Sprintf("instance %d's /metrics: %v", in.n, err)}, ""
		}
		st, err := metrics.ParseStats(resp.Body)
		resp.Body.Close()
		if err != nil {
			return []string{fmt.Sprintf("instance %d's /metrics: %v", in.n, err)}, ""
		}
		total += st.Batches + st.ChangeBatches
	}
	summary = fmt.Sprintf("batches run by the servers' last lives: %d", total)
	switch {
	case want && total == 0:
		bad = []string{"no server ran a batch: the scenario did not test batching"}
	case !want && total > 0:
		bad = []string{fmt.Sprintf("%d batches ran with --coalesce=false", total)}
	}
	return bad, summary
}

// setup creates the lanes' pools and groups through the first server.
func (h *harness) setup(ctx context.Context) []lane {
	c := hfhttp.NewClient(h.instances[0].url(), adminKey)
	seats := func(prefix string, n int) []string {
		var ids []string
		for i := range n {
			ids = append(ids, fmt.Sprintf("%s%02d", prefix, i+1))
		}
		return ids
	}
	lanes := []lane{
		{kind: lanePool, id: "pool-a", capacity: 10},
		{kind: lanePool, id: "pool-b", capacity: 10},
		{kind: lanePool, id: "pool-c", capacity: 16},
		{kind: lanePool, id: "pool-d", capacity: 16},
		{kind: laneSeats, id: "seats-a", units: seats("a", 10)},
		{kind: laneSeats, id: "seats-b", units: seats("b", 10)},
		{kind: laneRiders, id: "riders", units: seats("r", 6)},
		{kind: laneExpiry, id: "flash", capacity: 6},
	}
	for _, ln := range lanes {
		var err error
		switch ln.kind {
		case lanePool, laneExpiry:
			_, err = c.CreatePool(ctx, holdfast.Pool{ID: ln.id, Capacity: ln.capacity})
		default:
			if _, err = c.CreateGroup(ctx, holdfast.Group{ID: ln.id, Reusable: ln.kind == laneRiders}); err == nil {
				err = c.AddUnits(ctx, ln.id, ln.units)
			}
		}
		if err != nil {
			h.t.Fatalf("setting up %s: %v", ln.id, err)
		}
	}
	return lanes
}

// report prints the table and writes it to the artifacts folder.
func report(t *testing.T, results []result, d time.Duration) {
	var b strings.Builder
	fmt.Fprintf(&b, "chaos: %d instances (the sqlite scenarios: 1), %d clients, storm %s per scenario (CHAOS_DURATION; some scenarios run longer or shorter)\n\n", instances, clients, d)
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "scenario\tstrategy\toperations\tno answer\t503s\tnet errors\tin flight\trecovered in\tlinearizable\tdatabase checks\tverdict\t")
	for _, r := range results {
		db := "ok"
		if len(r.dbBad) > 0 {
			db = fmt.Sprintf("%d broken", len(r.dbBad))
		}
		linear := r.linear
		if linear != "ok" {
			linear = fmt.Sprintf("no (%d lanes)", strings.Count(linear, ",")+1)
		}
		broken := r.linear != "ok" || len(r.dbBad) > 0
		verdict := map[bool]string{false: "pass", true: "FAIL"}[broken]
		if r.broken {
			verdict = map[bool]string{false: "NOT CAUGHT", true: "caught, as it must be"}[broken]
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%s\t%s\t%s\t%s\t\n", r.name, r.strategy, r.ops, r.unknown, r.busy, r.netErrs, r.inFlight,
			r.recover.Round(time.Millisecond), linear, db, verdict)
	}
	tw.Flush()
	for _, r := range results {
		fmt.Fprintf(&b, "\n%s faults: %s\n", r.name, strings.Join(r.faults, "; "))
		for _, bad := range r.dbBad {
			fmt.Fprintf(&b, "  database: %s\n", bad)
		}
		if r.linear != "ok" {
			fmt.Fprintf(&b, "  not linearizable: %s\n", r.linear)
		}
		for _, h := range r.htmls {
			if abs, err := filepath.Abs(h); err == nil {
				h = abs
			}
			fmt.Fprintf(&b, "  history: %s\n", h)
		}
	}
	t.Log("\n" + b.String())
	_ = os.WriteFile(filepath.Join(*artifacts, "report.txt"), []byte(b.String()), 0o644)
}
