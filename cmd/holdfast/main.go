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
	"syscall"

	"github.com/spf13/cobra"

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
	root.AddCommand(serveCmd(e), migrateCmd(e), auditCmd(e), labCmd(e), poolCmd(e), groupCmd(e), holdCmd(e), bookCmd(e), keyCmd(e), webhookCmd(e), roomCmd(e), waitlistCmd(e), shardCmd(e))
	if err := errors.Join(*e.errs...); err != nil {
		// A malformed setting is an error at start-up, not a default.
		fmt.Fprintf(stderr, "holdfast: %v\n", err)
		return 2
	}
	refuseUnknownSubcommands(root)
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
