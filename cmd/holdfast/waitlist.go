package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/holdfast/holdfast"
)

func waitlistCmd(e env) *cobra.Command {
	var f clientFlags
	c := &cobra.Command{Use: "waitlist", Short: "Wait for a sold-out pool or group: what comes back is offered in order, as a hold",
		Example: "  holdfast waitlist join gala --holder alice --quantity 2\n  holdfast waitlist show gala wl_…\n" +
			"  holdfast waitlist list gala\n  holdfast waitlist leave gala wl_…\n  holdfast waitlist join --group hall --holder pair --any 2 --together"}
	f.register(c, e)
	var r holdfast.WaitlistRequest
	var group string
	// one is the pool named by the first argument, or the --group: a
	// group's waitlist takes the rest of the arguments the same way.
	one := func(args []string, rest int) (pool string, more []string, err error) {
		if group != "" {
			if len(args) != rest {
				return "", nil, &exitError{code: 2, err: fmt.Errorf("with --group, give %d argument(s)", rest)}
			}
			return "", args, nil
		}
		if len(args) != rest+1 {
			return "", nil, &exitError{code: 2, err: fmt.Errorf("give the pool and %d more argument(s), or --group", rest)}
		}
		return args[0], args[1:], nil
	}
	join := &cobra.Command{Use: "join [POOL]", Short: "Join a pool's waitlist, or a group's (--group, --any, --together): the same entry on every call for the same holder",
		Example: "  holdfast waitlist join gala --holder alice --quantity 2\n  holdfast waitlist join --group hall --holder pair --any 2 --together",
		Args:    cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			pool, _, err := one(args, 0)
			if err != nil {
				return err
			}
			r.Pool, r.Group = pool, group
			if group != "" {
				r.Quantity = 0
			} else {
				if cmd.Flags().Changed("any") || r.Together {
					return &exitError{code: 2, err: fmt.Errorf("--any and --together are for a group's waitlist (--group)")}
				}
				r.Any = 0
			}
			out, err := f.client().JoinWaitlist(cmd.Context(), r)
			if err != nil {
				return err
			}
			f.print(e.stdout, out, entryHeader, entryRow(out))
			return nil
		}}
	join.Flags().StringVar(&r.Holder, "holder", "", "your buyer's reference")
	join.Flags().Int64Var(&r.Quantity, "quantity", 1, "how many (a pool's waitlist)")
	join.Flags().Int64Var(&r.Any, "any", 1, "how many units (a group's waitlist)")
	join.Flags().BoolVar(&r.Together, "together", false, "next to each other in one row (a group's waitlist)")
	join.Flags().StringVar(&r.Admission, "admission", "", "a waiting room's admission, when a room protects the pool (holdfast room ticket shows it once admitted)")
	join.Flags().StringVar(&r.Ticket, "ticket", "", "instead of an admission: your place in the room, told sold_out at its sell-out; the entry keeps its queue order")
	_ = join.MarkFlagRequired("holder")
	show := &cobra.Command{Use: "show [POOL] ENTRY", Short: "An entry: position, or the offer's hold and when it lapses", Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			pool, rest, err := one(args, 1)
			if err != nil {
				return err
			}
			var out holdfast.WaitlistEntry
			if group != "" {
				out, err = f.client().GroupWaitlistEntry(cmd.Context(), group, rest[0])
			} else {
				out, err = f.client().WaitlistEntry(cmd.Context(), pool, rest[0])
			}
			if err != nil {
				return err
			}
			f.print(e.stdout, out, entryHeader, entryRow(out))
			return nil
		}}
	list := &cobra.Command{Use: "list [POOL]", Short: "A pool's or a group's waitlist, waiting and offered, in order (admin)", Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			pool, _, err := one(args, 0)
			if err != nil {
				return err
			}
			var out []holdfast.WaitlistEntry
			if group != "" {
				out, err = f.client().GroupWaitlist(cmd.Context(), group)
			} else {
				out, err = f.client().Waitlist(cmd.Context(), pool)
			}
			if err != nil {
				return err
			}
			rows := make([][]string, len(out))
			for i, en := range out {
				rows[i] = entryRow(en)
			}
			f.print(e.stdout, out, entryHeader, rows...)
			return nil
		}}
	leave := &cobra.Command{Use: "leave [POOL] ENTRY", Short: "Leave the waitlist (an offer out is released, to the next)", Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			pool, rest, err := one(args, 1)
			if err != nil {
				return err
			}
			var out holdfast.WaitlistEntry
			if group != "" {
				out, err = f.client().LeaveGroupWaitlist(cmd.Context(), group, rest[0], "")
			} else {
				out, err = f.client().LeaveWaitlist(cmd.Context(), pool, rest[0], "")
			}
			if err != nil {
				return err
			}
			f.print(e.stdout, out, entryHeader, entryRow(out))
			return nil
		}}
	for _, sub := range []*cobra.Command{join, show, list, leave} {
		sub.Flags().StringVar(&group, "group", "", "a group's waitlist instead of a pool's")
	}
	c.AddCommand(join, show, list, leave)
	return c
}

const entryHeader = "ENTRY\tPOOL/GROUP\tHOLDER\tQUANTITY\tSTATUS\tPOSITION\tHOLD\tOFFER LAPSES"

func entryRow(en holdfast.WaitlistEntry) []string {
	hold, lapses := "-", "-"
	if en.HoldID != "" {
		hold = en.HoldID
	}
	if en.OfferExpiresAt != nil {
		lapses = en.OfferExpiresAt.Format(time.RFC3339)
	}
	where, q := en.Pool, i64(en.Quantity)
	if en.Group != "" {
		where, q = en.Group, i64(en.Any)
		if en.Together {
			q += " together"
		}
	}
	return []string{en.ID, where, en.Holder, q, string(en.Status), i64(en.Position), hold, lapses}
}
