package main

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"time"

	"github.com/spf13/cobra"

	"github.com/holdfast/holdfast/internal/labrun"
)

func labCmd(e env) *cobra.Command {
	var f labrun.Options
	c := &cobra.Command{
		Use:   "lab",
		Short: "Storm strategies with concurrent buyers and audit what was oversold",
		Long: `lab runs the race the articles describe: concurrent buyers for a few tickets,
against each strategy in turn, each on a fresh database (never one of yours:
SQLite files in a temporary directory, or a fresh schema, dropped after, in
the PostgreSQL database --db names). After each run it counts in the
database whether anything was oversold or double-booked.

With no flags: 10 tickets, 20 buyers, every strategy SQLite offers, until
sold out. unsafe oversells; every other strategy must audit clean.`,
		Example: `  holdfast lab
  holdfast lab --db postgres://localhost/holdfast --redis redis://localhost:6379 --strategy all
  holdfast lab --scenario seats --capacity 200 --clients 64 --chart race.svg
  holdfast lab --target http://127.0.0.1:8080,http://127.0.0.1:8081 --key $ADMIN --audit-db postgres://…`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f.Serve = serveProcess
			err := labrun.Run(cmd.Context(), e.stdout, e.stderr, f)
			if u := (*labrun.UsageError)(nil); errors.As(err, &u) {
				return &exitError{code: 2, err: u.Err}
			}
			return err
		},
	}
	fs := c.Flags()
	fs.StringVar(&f.DB, "db", envOr(e, "HOLDFAST_LAB_DB", ""), "where the lab's databases go: empty for temporary SQLite files, or a postgres:// URL (a fresh schema per strategy)")
	fs.StringVar(&f.Redis, "redis", envOr(e, "HOLDFAST_REDIS", ""), "Redis URL, for the redislock strategy")
	fs.StringVar(&f.Strategies, "strategy", "all", "strategies to run: name[,name…] or all")
	fs.StringVar(&f.Scenario, "scenario", "pool", "pool (N tickets), seats (a seat map, 1–4 adjacent seats per buyer), riders (any free rider, who returns) or queue (a sale behind a waiting room: --joiners, --admit-per-second)")
	fs.IntVar(&f.Joiners, "joiners", 20000, "queue: people who join the waiting room, a quarter before it opens")
	fs.Float64Var(&f.AdmitRate, "admit-per-second", 200, "queue: the room's admission rate")
	fs.IntVar(&f.Clients, "clients", 20, "concurrent buyers")
	fs.Int64Var(&f.Capacity, "capacity", 10, "tickets, seats or riders")
	fs.Int64Var(&f.Quantity, "quantity", 1, "tickets per request (pool)")
	fs.DurationVar(&f.Duration, "duration", 0, "how long to run; 0 runs until sold out (riders: 3s)")
	fs.DurationVar(&f.Think, "think", 5*time.Millisecond, "pause between a strategy's check and its write, like a payment check in a real handler")
	fs.IntVar(&f.Instances, "instances", 1, "in-process servers sharing each database (in-process locks are not enough)")
	fs.StringVar(&f.Targets, "target", "", "storm running servers instead: URL[,URL…]")
	secretVar(fs, &f.Key, "key", e, "HOLDFAST_KEY", "API key for --target (admin, to create the lab's pool)")
	fs.StringVar(&f.AuditDB, "audit-db", "", "with --target: the servers' database, audited directly after the run")
	fs.BoolVar(&f.JSON, "json", false, "print the results as JSON")
	fs.StringVar(&f.Chart, "chart", "", "write a chart: out.svg or out.png")
	fs.StringVar(&f.Report, "report", "", "write the JSON report to this file")
	fs.Uint64Var(&f.Seed, "seed", 1, "seed of the buyers' choices")
	fs.BoolVar(&f.Coalesce, "coalesce", true, "combine concurrent claims on a pool into one transaction (atomic)")
	fs.BoolVar(&f.Bench, "bench", false, "the benchmark: every shape of sale (--bench-shapes) against pgbench running the same shape one transaction per booking, then holdfast over HTTP (with and without keys) and as a library on PostgreSQL, and over HTTP on SQLite (--duration per run, default 10s; needs --db postgres://…)")
	fs.IntSliceVar(&f.BenchClients, "bench-clients", []int{64, 256}, "client counts the --bench buying shapes run at")
	fs.IntVar(&f.Shards, "shards", 0, "with --bench: the sharding benchmark instead, over this many shards (databases on the --db server, which needs max_prepared_transactions > 0): one partition alone, every shard busy, holds within one shard and across two, and across two with 1 ms added between server and shards (Toxiproxy)")
	fs.StringVar(&f.BenchShapes, "bench-shapes", "all", "the --bench shapes: all, or some of pool,pool-limit-book,events,seats,riders,mixed,sellout,viewers,streams,webhooks")
	fs.StringVar(&f.CPUProfile, "cpuprofile", "", "write a CPU profile of the whole run (go tool pprof) to this file")
	return c
}

// serveProcess is `holdfast serve` run by this very binary, as a process
// of its own: the benchmark's HTTP rows measure it apart from their load
// generator.
func serveProcess(ctx context.Context, args ...string) *exec.Cmd {
	exe, err := os.Executable()
	if err != nil {
		exe = os.Args[0]
	}
	return exec.CommandContext(ctx, exe, append([]string{"serve"}, args...)...)
}
