// Command holdfast is the reservation engine's server, migrator, auditor
// and API client.
//
//	holdfast serve            # HTTP API on 127.0.0.1:8080, data in ./holdfast.db
//	holdfast migrate --db …   # apply the schema
//	holdfast audit --db …     # recount every pool and unit; exit 1 on a difference
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/holdfast/holdfast"
	hfhttp "github.com/holdfast/holdfast/http"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

// exitError carries an exit code other than 1 (or 1 with nothing more to
// print, when the command already said what went wrong).
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit %d", e.code)
	}
	return e.err.Error()
}

// env is the process environment as the commands see it.
type env struct {
	getenv         func(string) string
	stdout, stderr io.Writer
	// errs collects environment values that do not parse, found while the
	// commands read their defaults.
	errs *[]error
}

func (e env) bad(err error) { *e.errs = append(*e.errs, err) }

// run is main without the process: tests call it with their own args,
// environment and output, and get the exit code.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	e := env{getenv: getenv, stdout: stdout, stderr: stderr, errs: new([]error)}
	root := &cobra.Command{
		Use:   "holdfast",
		Short: "holdfast — reservations that never oversell",
		Long: `holdfast is a reservation engine: pools of tickets, seat maps, rider fleets,
held and confirmed so that nothing is ever given out twice.

Storage is a SQLite file (default ./holdfast.db, no server needed) or a
postgres:// URL for several servers sharing one database.`,
		Example: `  holdfast serve --demo                           # API on 127.0.0.1:8080, data in ./holdfast.db, sample data
  holdfast hold create --holder alice --pool concert:2
  holdfast serve --db postgres://localhost/holdfast --addr :8080 --admin-key $KEY
  holdfast audit --db ./holdfast.db`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.AddCommand(serveCmd(e), migrateCmd(e), auditCmd(e), labCmd(e), poolCmd(e), groupCmd(e), holdCmd(e), bookCmd(e), keyCmd(e), webhookCmd(e), roomCmd(e), waitlistCmd(e), paymentCmd(e), shardCmd(e))
	if err := errors.Join(*e.errs...); err != nil {
		// A malformed setting is an error at start-up, not a default.
		fmt.Fprintf(stderr, "holdfast: %v\n", err)
		return 2
	}
	refuseUnknownSubcommands(root)
	explain(root)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	var ee *exitError
	var he *holdfast.Error
	var ue *hfhttp.UnreachableError
	if errors.As(err, &ue) {
		fmt.Fprintf(stderr, "holdfast: %v\nIs the server running? Point the CLI at another with --server URL or HOLDFAST_SERVER.\n", ue)
		return 1
	}
	if errors.As(err, &ee) {
		if ee.err != nil {
			fmt.Fprintf(stderr, "holdfast: %v\n", ee.err)
		}
		return ee.code
	}
	if errors.As(err, &he) {
		// A refusal from the engine or a server: its stable code first,
		// for scripts, then what it means.
		fmt.Fprintf(stderr, "holdfast: %s: %v\n", he.Code, err)
		return 1
	}
	fmt.Fprintf(stderr, "holdfast: %v\n", err)
	return 1
}

// refuseUnknownSubcommands makes a command that only groups others (pool,
// room, …) refuse an unknown subcommand with an error and a non-zero exit,
// as the root does; cobra would print its help and exit 0.
func refuseUnknownSubcommands(c *cobra.Command) {
	for _, sub := range c.Commands() {
		refuseUnknownSubcommands(sub)
	}
	if c.HasParent() && c.HasSubCommands() && !c.Runnable() {
		c.Args = cobra.ArbitraryArgs
		c.RunE = func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return cmd.Help()
			}
			return &exitError{code: 2, err: fmt.Errorf("unknown command %q for %q\nRun '%s --help' for its commands", args[0], cmd.CommandPath(), cmd.CommandPath())}
		}
	}
}

// examples are the commands' examples that their definitions leave out.
var examples = map[string]string{
	"holdfast key list":           "  holdfast key list --key $ADMIN_KEY",
	"holdfast room create":        "  holdfast room create --id gala-room --pool gala --opens-at 2026-12-24T10:00:00Z --admit-per-second 50 --key $ADMIN_KEY",
	"holdfast room join":          "  holdfast room join gala-room --holder alice",
	"holdfast room show":          "  holdfast room show gala-room",
	"holdfast room list":          "  holdfast room list --key $ADMIN_KEY",
	"holdfast room ticket":        "  holdfast room ticket gala-room tk_…",
	"holdfast room verify":        "  holdfast room verify gala-room --ticket tk_…   # after opening: ok, or the first difference (exit 1)",
	"holdfast shard":              "  holdfast shard list --db postgres://localhost/catalog --shard postgres://localhost/east\n  holdfast shard move festival-day2 --to 1 --db postgres://localhost/catalog --shard postgres://localhost/east",
	"holdfast waitlist join":      "  holdfast waitlist join gala --holder alice --quantity 2\n  holdfast waitlist join gala --holder alice --admission adm_…   # behind a waiting room\n  holdfast waitlist join gala --holder alice --ticket tk_…   # the room sold out: keep your place's order",
	"holdfast waitlist leave":     "  holdfast waitlist leave gala wl_…",
	"holdfast waitlist list":      "  holdfast waitlist list gala --key $ADMIN_KEY",
	"holdfast waitlist show":      "  holdfast waitlist show gala wl_…",
	"holdfast webhook create":     "  holdfast webhook create --url https://shop.example/hooks/holdfast --events hold.confirmed,hold.expired",
	"holdfast webhook delete":     "  holdfast webhook delete wh_…",
	"holdfast webhook deliveries": "  holdfast webhook deliveries wh_… --status failed",
	"holdfast webhook disable":    "  holdfast webhook disable wh_…",
	"holdfast webhook enable":     "  holdfast webhook enable wh_…",
	"holdfast webhook list":       "  holdfast webhook list",
	"holdfast webhook update":     "  holdfast webhook update wh_… --events hold.confirmed --description \"box office\"",
}

// explain gives every command an example and marks its required flags
// "(required)" in its help.
func explain(c *cobra.Command) {
	if c.Example == "" {
		c.Example = examples[c.CommandPath()]
	}
	c.Flags().VisitAll(func(fl *pflag.Flag) {
		if req := fl.Annotations[cobra.BashCompOneRequiredFlag]; len(req) > 0 && req[0] == "true" && !strings.Contains(fl.Usage, "(required)") {
			fl.Usage += " (required)"
		}
	})
	for _, sub := range c.Commands() {
		explain(sub)
	}
}
