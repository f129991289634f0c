package main

import (
	"time"

	"github.com/spf13/cobra"

	"github.com/holdfast/holdfast"
)

func waitlistCmd(e env) *cobra.Command {
	var f clientFlags
	c := &cobra.Command{Use: "waitlist", Short: "Wait for a sold-out pool: capacity that comes back is offered in order, as a hold",
		Example: "  holdfast waitlist join gala --holder alice --quantity 2\n  holdfast waitlist show gala wl_…\n" +
			"  holdfast waitlist list gala\n  holdfast waitlist leave gala wl_…"}
	f.register(c, e)
	var r holdfast.WaitlistRequest
	join := &cobra.Command{Use: "join POOL", Short: "Join the pool's waitlist (the same entry on every call for the same holder)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			r.Pool = args[0]
			out, err := f.client().JoinWaitlist(cmd.Context(), r)
			if err != nil {
				return err
			}
			f.print(e.stdout, out, entryHeader, entryRow(out))
			return nil
		}}
	join.Flags().StringVar(&r.Holder, "holder", "", "your buyer's reference")
	join.Flags().Int64Var(&r.Quantity, "quantity", 1, "how many")
	join.Flags().StringVar(&r.Admission, "admission", "", "a waiting room's admission, when a room protects the pool (holdfast room ticket shows it once admitted)")
	join.Flags().StringVar(&r.Ticket, "ticket", "", "instead of an admission: your place in the room, told sold_out at its sell-out; the entry keeps its queue order")
	_ = join.MarkFlagRequired("holder")
	show := &cobra.Command{Use: "show POOL ENTRY", Short: "An entry: position, or the offer's hold and when it lapses", Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			out, err := f.client().WaitlistEntry(cmd.Context(), args[0], args[1])
			if err != nil {
				return err
			}
			f.print(e.stdout, out, entryHeader, entryRow(out))
			return nil
		}}
	list := &cobra.Command{Use: "list POOL", Short: "The pool's waitlist, waiting and offered, in order (admin)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			out, err := f.client().Waitlist(cmd.Context(), args[0])
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
	leave := &cobra.Command{Use: "leave POOL ENTRY", Short: "Leave the waitlist (an offer out is released, to the next)", Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			out, err := f.client().LeaveWaitlist(cmd.Context(), args[0], args[1], "")
			if err != nil {
				return err
			}
			f.print(e.stdout, out, entryHeader, entryRow(out))
			return nil
		}}
	c.AddCommand(join, show, list, leave)
	return c
}

const entryHeader = "ENTRY\tPOOL\tHOLDER\tQUANTITY\tSTATUS\tPOSITION\tHOLD\tOFFER LAPSES"

func entryRow(en holdfast.WaitlistEntry) []string {
	hold, lapses := "-", "-"
	if en.HoldID != "" {
		hold = en.HoldID
	}
	if en.OfferExpiresAt != nil {
		lapses = en.OfferExpiresAt.Format(time.RFC3339)
	}
	return []string{en.ID, en.Pool, en.Holder, i64(en.Quantity), string(en.Status), i64(en.Position), hold, lapses}
}
