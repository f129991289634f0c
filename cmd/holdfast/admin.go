package main

import (
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/internal/opendb"
)

func migrateCmd(e env) *cobra.Command {
	var db dbFlags
	c := &cobra.Command{
		Use:     "migrate",
		Short:   "Apply the database schema (serve does this too)",
		Example: "  holdfast migrate --db postgres://localhost/holdfast",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := db.open(cmd.Context(), holdfast.Config{})
			if err != nil {
				return err
			}
			s.Close()
			fmt.Fprintf(e.stdout, "migrated %s\n", opendb.Describe(db.db))
			return nil
		},
	}
	db.register(c.Flags(), e)
	return c
}

func auditCmd(e env) *cobra.Command {
	var db dbFlags
	var asJSON bool
	c := &cobra.Command{
		Use:   "audit",
		Short: "Recount every pool and unit from the claim rows; exit 1 on any difference",
		Long: `audit recounts every pool's held and confirmed quantity, every holder's total
and every unit's claims from the hold rows, and compares them with the
counters the engine keeps. It reports oversold capacity and double-booked
units, and exits 1 if anything differs. It only reads — it never migrates,
and a database that does not exist is an error — so run it any time, also
against a live database.`,
		Example: "  holdfast audit --db ./holdfast.db\n  holdfast audit --db postgres://localhost/holdfast --json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := db.openExisting(cmd.Context())
			if err != nil {
				return err
			}
			defer s.Close()
			r, err := s.Audit(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(e.stdout)
				enc.SetIndent("", "  ")
				_ = enc.Encode(r)
			} else {
				fmt.Fprintf(e.stdout, "audited %s: %d pools, %d units; oversold %d, double-booked %d\n",
					opendb.Describe(db.db), r.Pools, r.Units, r.Oversold, r.DoubleBooked)
				if r.Payments > 0 {
					fmt.Fprintf(e.stdout, "payments: %d recorded, each a ticket or a refund unless listed below\n", r.Payments)
				}
				for _, ref := range r.RefundsDueOld {
					fmt.Fprintf(e.stdout, "REFUND OVERDUE %s: due back for more than a day (holdfast payment refunded %s once refunded)\n", ref, ref)
				}
				for _, d := range r.Differences {
					fmt.Fprintf(e.stdout, "DIFFERENCE %s\n", d)
				}
			}
			if !r.OK() {
				return &exitError{code: 1, err: fmt.Errorf("audit: %d differences", len(r.Differences))}
			}
			if !asJSON {
				fmt.Fprintln(e.stdout, "ok: every counter matches its recount")
			}
			return nil
		},
	}
	db.register(c.Flags(), e)
	c.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON")
	return c
}
