package main

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/holdfast/holdfast"
)

func roomCmd(e env) *cobra.Command {
	var f clientFlags
	c := &cobra.Command{Use: "room", Short: "Put a sale behind a waiting room, join it, follow a place",
		Example: "  holdfast room create --id gala-room --pool gala --opens-at 2026-12-01T10:00:00Z --admit-per-second 50 --max-inside 500\n" +
			"  holdfast room join gala-room --holder alice\n  holdfast room ticket gala-room tk_…"}
	f.register(c, e)
	var r holdfast.Room
	var pools, groups, opensAt string
	create := &cobra.Command{Use: "create", Short: "Create a room (admin): holds on its pools and groups then need an admission", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			at, err := time.Parse(time.RFC3339, opensAt)
			if err != nil {
				return &exitError{code: 2, err: fmt.Errorf("--opens-at %q: want RFC 3339, e.g. 2026-12-01T10:00:00Z", opensAt)}
			}
			r.OpensAt, r.Pools, r.Groups = at, list(pools), list(groups)
			out, err := f.client().CreateRoom(cmd.Context(), r)
			if err != nil {
				return err
			}
			f.print(e.stdout, out, roomHeader, roomRow(out))
			return nil
		}}
	fl := create.Flags()
	fl.StringVar(&r.ID, "id", "", "the room's id")
	fl.StringVar(&pools, "pool", "", "comma-separated pools it protects")
	fl.StringVar(&groups, "group", "", "comma-separated groups it protects")
	fl.StringVar(&opensAt, "opens-at", "", "when admissions start (RFC 3339); those who join before it are ordered by the room's draw, published then")
	fl.Float64Var(&r.AdmitPerSecond, "admit-per-second", 10, "admissions per second")
	fl.Int64Var(&r.AdmitTTLSeconds, "admit-ttl", 600, "seconds an admission is valid")
	fl.Int64Var(&r.MaxInside, "max-inside", 100, "admitted and not yet done, at most")
	fl.Int64Var(&r.MaxPerKey, "max-per-key", 0, "places one client key may take (0: no bound)")
	fl.Int64Var(&r.MaxUnitsPerAdmission, "max-units-per-admission", 0, "units one admission buys (0: no bound)")
	fl.StringVar((*string)(&r.Admit), "admit", "rate", "rate: by --admit-per-second and --max-inside; stock: also never more admissions out than the stock can serve (needs --max-units-per-admission)")
	_ = create.MarkFlagRequired("id")
	_ = create.MarkFlagRequired("opens-at")
	show := &cobra.Command{Use: "show ID", Short: "A room with its counts", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			out, err := f.client().Room(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			f.print(e.stdout, out, roomHeader, roomRow(out))
			return nil
		}}
	lst := &cobra.Command{Use: "list", Short: "Every room with its counts (admin)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out, err := f.client().Rooms(cmd.Context())
			if err != nil {
				return err
			}
			rows := make([][]string, len(out))
			for i, r := range out {
				rows[i] = roomRow(r)
			}
			f.print(e.stdout, out, roomHeader, rows...)
			return nil
		}}
	var holder string
	join := &cobra.Command{Use: "join ROOM", Short: "Take a place (the same one on every call for the same holder)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			t, err := f.client().JoinRoom(cmd.Context(), args[0], holder, "")
			if err != nil {
				return err
			}
			f.print(e.stdout, t, ticketHeader, ticketRow(t))
			return nil
		}}
	join.Flags().StringVar(&holder, "holder", "", "your buyer's reference")
	_ = join.MarkFlagRequired("holder")
	ticket := &cobra.Command{Use: "ticket ROOM TICKET", Short: "A place: position, estimated wait, and the admission once admitted", Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			t, err := f.client().RoomTicket(cmd.Context(), args[0], args[1])
			if err != nil {
				return err
			}
			f.print(e.stdout, t, ticketHeader, ticketRow(t))
			return nil
		}}
	var mine string
	verify := &cobra.Command{Use: "verify ROOM", Short: "Check a room's draw from the API alone: the seed against its commitment, the order, the places (and your ticket's)",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl := f.client()
			r, err := cl.Room(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			d, err := cl.RoomDraw(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			err = holdfast.VerifyDraw(r.SeedCommitment, d, mine)
			if err == nil && mine != "" {
				// The place the ticket reads is the place the draw gives.
				var t holdfast.RoomTicket
				if t, err = cl.RoomTicket(cmd.Context(), args[0], mine); err == nil {
					for _, en := range d.Entries {
						if en.TicketSHA256 == holdfast.TicketSHA256(mine) && en.Place != t.Place {
							err = fmt.Errorf("your ticket reads place %d, the draw gives it place %d", t.Place, en.Place)
						}
					}
				}
			}
			if err != nil {
				return &exitError{code: 1, err: fmt.Errorf("room %s: the draw does not verify: %w", args[0], err)}
			}
			checked := "every place's order"
			if len(d.Entries) > 0 && d.Entries[0].Ticket != "" {
				checked = "every ticket's hash and HMAC, and the order"
			}
			fmt.Fprintf(e.stdout, "ok: room %s, %d tickets drawn before opening; the seed matches commitment %s; %s checked", args[0], d.Total, r.SeedCommitment, checked)
			if mine != "" {
				fmt.Fprintf(e.stdout, "; your ticket is in it at its place")
			}
			fmt.Fprintln(e.stdout)
			return nil
		}}
	verify.Flags().StringVar(&mine, "ticket", "", "your ticket: check its HMAC and place too")
	c.AddCommand(create, lst, show, join, ticket, verify)
	return c
}

const (
	roomHeader   = "ID\tPOOLS\tGROUPS\tOPENS AT\tPER SECOND\tMAX INSIDE\tWAITING\tINSIDE\tSOLD OUT"
	ticketHeader = "TICKET\tHOLDER\tSTATUS\tPOSITION\tWAIT (S)\tADMISSION"
)

func roomRow(r holdfast.Room) []string {
	return []string{r.ID, strings.Join(r.Pools, ","), strings.Join(r.Groups, ","), r.OpensAt.Format(time.RFC3339),
		strconv.FormatFloat(r.AdmitPerSecond, 'f', -1, 64), i64(r.MaxInside), i64(r.Waiting), i64(r.Inside), strconv.FormatBool(r.SoldOut)}
}

func ticketRow(t holdfast.RoomTicket) []string {
	adm := t.Admission
	if adm == "" {
		adm = "-"
	}
	return []string{t.Ticket, t.Holder, string(t.Status), i64(t.Position), strconv.FormatFloat(t.EstimatedWaitSeconds, 'f', 1, 64), adm}
}

// list splits a comma-separated list; empty is none.
func list(s string) []string {
	out := []string{}
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}
