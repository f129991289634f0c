package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/spf13/cobra"

	"github.com/holdfast/holdfast"
	hfhttp "github.com/holdfast/holdfast/http"
)

// clientFlags are the flags of the commands that talk to a server.
type clientFlags struct {
	server string
	key    string
	json   bool
}

func (f *clientFlags) register(c *cobra.Command, e env) {
	c.PersistentFlags().StringVar(&f.server, "server", envOr(e, "HOLDFAST_SERVER", "http://127.0.0.1:8080"), "the holdfast server (env HOLDFAST_SERVER)")
	secretVar(c.PersistentFlags(), &f.key, "key", e, "HOLDFAST_KEY", "API key")
	c.PersistentFlags().BoolVar(&f.json, "json", false, "print JSON instead of a table")
}

func (f *clientFlags) client() *hfhttp.Client { return hfhttp.NewClient(f.server, f.key) }

// print writes v as JSON, or as the table rows give.
func (f *clientFlags) print(w io.Writer, v any, header string, rows ...[]string) {
	if f.json {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(v)
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	tw.Flush()
}

func i64(n int64) string { return strconv.FormatInt(n, 10) }

func poolRows(pools ...holdfast.Pool) [][]string {
	var rows [][]string
	for _, p := range pools {
		limit := "-"
		if p.PerHolderLimit > 0 {
			limit = i64(p.PerHolderLimit)
		}
		rows = append(rows, []string{p.ID, p.Name, i64(p.Capacity), i64(p.Available), i64(p.Held), i64(p.Confirmed), limit})
		// Each channel's part, under its pool.
		for _, a := range p.Allocations {
			rows = append(rows, []string{"  " + p.ID + " (" + a.Channel + ")", "allocation", i64(a.Quantity), i64(a.Available), i64(a.Held), i64(a.Confirmed), "-"})
		}
	}
	return rows
}

const poolHeader = "ID\tNAME\tCAPACITY\tAVAILABLE\tHELD\tCONFIRMED\tLIMIT"

func holdRows(holds ...holdfast.Hold) [][]string {
	var rows [][]string
	for _, h := range holds {
		var lines []string
		for _, l := range h.Lines {
			switch {
			case l.Pool != "":
				lines = append(lines, fmt.Sprintf("%s×%d", l.Pool, l.Quantity))
			case l.Group != "":
				lines = append(lines, fmt.Sprintf("%s any %d: %s", l.Group, l.Any, strings.Join(holdfast.NaturalOrder(l.Units), ",")))
			default:
				lines = append(lines, strings.Join(holdfast.NaturalOrder(l.Units), ","))
			}
		}
		rows = append(rows, []string{h.ID, h.Holder, string(h.Status), h.ExpiresAt.Local().Format(time.TimeOnly), strings.Join(lines, "; ")})
	}
	return rows
}

const holdHeader = "ID\tHOLDER\tSTATUS\tEXPIRES\tLINES"

func poolCmd(e env) *cobra.Command {
	var f clientFlags
	c := &cobra.Command{Use: "pool", Short: "Create and read pools on a server",
		Example: "  holdfast pool create --id concert --capacity 10 --limit 4\n  holdfast pool list"}
	f.register(c, e)
	var p holdfast.Pool
	create := &cobra.Command{Use: "create", Short: "Create a pool (admin)", Args: cobra.NoArgs,
		Example: "  holdfast pool create --id concert --name Concert --capacity 10 --limit 4",
		RunE: func(cmd *cobra.Command, _ []string) error {
			out, err := f.client().CreatePool(cmd.Context(), p)
			if err != nil {
				return err
			}
			f.print(e.stdout, out, poolHeader, poolRows(out)...)
			return nil
		}}
	create.Flags().StringVar(&p.ID, "id", "", "pool id")
	create.Flags().StringVar(&p.Name, "name", "", "pool name")
	create.Flags().Int64Var(&p.Capacity, "capacity", 0, "capacity")
	create.Flags().Int64Var(&p.PerHolderLimit, "limit", 0, "per-holder limit (0: none)")
	create.Flags().Int64Var(&p.OfferTTLSeconds, "offer-ttl", 0, "seconds a waitlist offer lasts (0: 600)")
	create.Flags().StringVar(&p.Partition, "partition", "", "the event, venue or tenant it belongs to, on a server with --shard: a partition lives on one shard (default: its own id)")
	_ = create.MarkFlagRequired("id")
	_ = create.MarkFlagRequired("capacity")
	get := &cobra.Command{Use: "get ID", Short: "A pool with its availability", Args: cobra.ExactArgs(1),
		Example: "  holdfast pool get concert",
		RunE: func(cmd *cobra.Command, args []string) error {
			out, err := f.client().Pool(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			f.print(e.stdout, out, poolHeader, poolRows(out)...)
			return nil
		}}
	list := &cobra.Command{Use: "list", Short: "Every pool", Args: cobra.NoArgs, Example: "  holdfast pool list --json",
		RunE: func(cmd *cobra.Command, _ []string) error {
			out, err := f.client().Pools(cmd.Context())
			if err != nil {
				return err
			}
			f.print(e.stdout, out, poolHeader, poolRows(out...)...)
			return nil
		}}
	var alloc holdfast.AllocationRequest
	var releaseAt string
	allocate := &cobra.Command{Use: "allocate POOL", Short: "Set part of a pool aside for a sales channel (admin); --change a channel's allocation, --quantity 0 --end to give it back",
		Example: "  holdfast pool allocate concert --channel presale --quantity 50 --release-at 2026-12-24T18:00:00Z\n" +
			"  holdfast pool allocate concert --channel presale --quantity 40 --change\n  holdfast pool allocate concert --channel presale --end",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			end, _ := cmd.Flags().GetBool("end")
			var out holdfast.Pool
			var err error
			switch {
			case end:
				out, err = f.client().EndAllocation(cmd.Context(), args[0], alloc.Channel)
			case !cmd.Flags().Changed("quantity"):
				return &exitError{code: 2, err: fmt.Errorf("--quantity is required (or --end)")}
			default:
				alloc.Pool = args[0]
				if releaseAt != "" {
					t, perr := time.Parse(time.RFC3339, releaseAt)
					if perr != nil {
						return &exitError{code: 2, err: fmt.Errorf("--release-at %q is not an RFC 3339 time", releaseAt)}
					}
					alloc.ReleaseAt = &t
				}
				out, err = f.client().Allocate(cmd.Context(), alloc)
			}
			if err != nil {
				return err
			}
			rows := [][]string{}
			for _, a := range out.Allocations {
				rows = append(rows, []string{a.Channel, i64(a.Quantity), i64(a.Available), i64(a.Held), i64(a.Confirmed)})
			}
			f.print(e.stdout, out, "CHANNEL\tQUANTITY\tAVAILABLE\tHELD\tCONFIRMED", rows...)
			return nil
		}}
	allocate.Flags().StringVar(&alloc.Channel, "channel", "", "the sales channel")
	allocate.Flags().Int64Var(&alloc.Quantity, "quantity", 0, "what the channel may sell, taken from what the general sale has unsold")
	allocate.Flags().StringVar(&releaseAt, "release-at", "", "when what the channel has not sold goes back to the general sale (RFC 3339)")
	allocate.Flags().BoolVar(&alloc.Existing, "change", false, "change the channel's allocation (refused if it has none)")
	allocate.Flags().Bool("end", false, "end the allocation: what the channel has not sold goes back now")
	_ = allocate.MarkFlagRequired("channel")
	c.AddCommand(create, get, list, allocate)
	return c
}

func groupCmd(e env) *cobra.Command {
	var f clientFlags
	c := &cobra.Command{Use: "group", Short: "Create unit groups (seat maps, fleets) and add units",
		Example: "  holdfast group create --id hall\n  holdfast group add-units hall A-1 A-2 A-3\n  holdfast group get hall"}
	f.register(c, e)
	var g holdfast.Group
	create := &cobra.Command{Use: "create", Short: "Create a unit group (admin)", Args: cobra.NoArgs,
		Example: "  holdfast group create --id riders --name Riders --reusable",
		RunE: func(cmd *cobra.Command, _ []string) error {
			out, err := f.client().CreateGroup(cmd.Context(), g)
			if err != nil {
				return err
			}
			f.print(e.stdout, out, "ID\tNAME\tREUSABLE", []string{out.ID, out.Name, strconv.FormatBool(out.Reusable)})
			return nil
		}}
	create.Flags().StringVar(&g.ID, "id", "", "group id")
	create.Flags().StringVar(&g.Name, "name", "", "group name")
	create.Flags().BoolVar(&g.Reusable, "reusable", false, "units return to the group when a hold completes (riders)")
	create.Flags().StringVar(&g.Partition, "partition", "", "the event, venue or tenant it belongs to, on a server with --shard (default: its own id)")
	_ = create.MarkFlagRequired("id")
	add := &cobra.Command{Use: "add-units GROUP ID...", Short: "Add units to a group, all or none (admin)", Args: cobra.MinimumNArgs(2),
		Example: "  holdfast group add-units hall A-1 A-2 A-3\n  holdfast group add-units hall B-1,B-2,B-3",
		RunE: func(cmd *cobra.Command, args []string) error {
			ids := unitIDs(args[1:]...)
			if err := f.client().AddUnits(cmd.Context(), args[0], ids); err != nil {
				return err
			}
			f.print(e.stdout, map[string]any{"group": args[0], "added": len(ids)}, "GROUP\tADDED", []string{args[0], strconv.Itoa(len(ids))})
			return nil
		}}
	get := &cobra.Command{Use: "get ID", Short: "A group's unit counts and free units", Args: cobra.ExactArgs(1),
		Example: "  holdfast group get hall",
		RunE: func(cmd *cobra.Command, args []string) error {
			g, err := f.client().Group(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			f.print(e.stdout, g, "ID\tUNITS\tFREE\tHELD\tCONFIRMED\tFREE UNITS",
				[]string{g.ID, i64(g.Units), i64(g.Free), i64(g.Held), i64(g.Confirmed), strings.Join(holdfast.NaturalOrder(g.FreeUnits), ",")})
			return nil
		}}
	var channel string
	allocate := &cobra.Command{Use: "allocate GROUP ID...", Short: "Set named units of a group aside for a sales channel (admin); --end gives the channel's units back",
		Example: "  holdfast group allocate hall A-1 A-2 --channel boxoffice\n  holdfast group allocate hall --channel boxoffice --end",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			end, _ := cmd.Flags().GetBool("end")
			var out holdfast.GroupAvailability
			var err error
			switch {
			case end && len(args) > 1:
				return &exitError{code: 2, err: fmt.Errorf("--end gives back every unit of the channel: name no units")}
			case end:
				out, err = f.client().EndUnitAllocation(cmd.Context(), args[0], channel)
			case len(args) == 1:
				return &exitError{code: 2, err: fmt.Errorf("name the units to set aside (or --end)")}
			default:
				out, err = f.client().AllocateUnits(cmd.Context(), holdfast.UnitAllocationRequest{Group: args[0], Channel: channel, Units: unitIDs(args[1:]...)})
			}
			if err != nil {
				return err
			}
			rows := [][]string{}
			for _, a := range out.Allocations {
				rows = append(rows, []string{a.Channel, i64(a.Units), i64(a.Available), i64(a.Held), i64(a.Confirmed)})
			}
			f.print(e.stdout, out, "CHANNEL\tUNITS\tAVAILABLE\tHELD\tCONFIRMED", rows...)
			return nil
		}}
	allocate.Flags().StringVar(&channel, "channel", "", "the sales channel")
	allocate.Flags().Bool("end", false, "give the channel's units back to the general sale: the free ones now, the held ones when their hold ends")
	_ = allocate.MarkFlagRequired("channel")
	c.AddCommand(create, add, get, allocate)
	return c
}

// holdFlags describe a hold request on the command line.
type holdFlags struct {
	holder string
	ttl    time.Duration
	// lines are the --pool, --units and --any flags in the order given:
	// refusals name lines by number, so the request keeps the user's order.
	lines []lineFlag
	// admission is a waiting room's token.
	admission string
}

// lineFlag is one line flag as given: its name and its value.
type lineFlag struct{ flag, value string }

// lineValue appends each use of its flag to the shared list of lines.
type lineValue struct {
	flag  string
	lines *[]lineFlag
}

func (v lineValue) String() string { return "" }
func (v lineValue) Type() string   { return "stringArray" }
func (v lineValue) Set(s string) error {
	*v.lines = append(*v.lines, lineFlag{v.flag, s})
	return nil
}

func (h *holdFlags) register(c *cobra.Command) {
	c.Flags().StringVar(&h.holder, "holder", "", "your buyer's reference")
	c.Flags().DurationVar(&h.ttl, "ttl", 0, "how long the hold lasts (default: the server's)")
	c.Flags().Var(lineValue{"pool", &h.lines}, "pool", "a pool line, POOL:QUANTITY (repeatable)")
	c.Flags().Var(lineValue{"units", &h.lines}, "units", "a unit line, ID,ID,… or \"ID ID …\" (repeatable)")
	c.Flags().Var(lineValue{"any", &h.lines}, "any", "a group line, GROUP:K for any K free units (repeatable)")
	c.Flags().StringVar(&h.admission, "admission", "", "a waiting room's admission (holdfast room ticket shows it once admitted)")
	_ = c.MarkFlagRequired("holder")
}

// request builds the hold request, its lines in the order the flags came.
func (h *holdFlags) request() (holdfast.HoldRequest, error) {
	r := holdfast.HoldRequest{Holder: h.holder, TTL: h.ttl, Admission: h.admission}
	split := func(flag, v string) (string, int64, error) {
		id, n, ok := strings.Cut(v, ":")
		q, err := strconv.ParseInt(n, 10, 64)
		if !ok || err != nil {
			return "", 0, fmt.Errorf("--%s %q: want ID:NUMBER", flag, v)
		}
		return id, q, nil
	}
	for _, l := range h.lines {
		switch l.flag {
		case "units":
			r.Lines = append(r.Lines, holdfast.Line{Units: unitIDs(l.value)})
		default:
			id, q, err := split(l.flag, l.value)
			if err != nil {
				return r, err
			}
			if l.flag == "pool" {
				r.Lines = append(r.Lines, holdfast.Line{Pool: id, Quantity: q})
			} else {
				r.Lines = append(r.Lines, holdfast.Line{Group: id, Any: q})
			}
		}
	}
	if len(r.Lines) == 0 {
		return r, fmt.Errorf("name at least one line: --pool, --units or --any")
	}
	return r, nil
}

// unitIDs reads unit ids separated by commas, spaces or both, the same
// wherever the CLI takes a list of units ("A-1,A-2", "A-1 A-2", or one
// argument each).
func unitIDs(args ...string) []string {
	var ids []string
	for _, a := range args {
		ids = append(ids, strings.FieldsFunc(a, func(r rune) bool { return r == ',' || unicode.IsSpace(r) })...)
	}
	return ids
}

func holdCmd(e env) *cobra.Command {
	var f clientFlags
	c := &cobra.Command{Use: "hold", Short: "Hold, confirm, release and read holds",
		Example: "  holdfast hold create --holder alice --pool concert:2\n  holdfast hold confirm h_… --payment-ref pi_123"}
	f.register(c, e)
	var hf holdFlags
	create := &cobra.Command{Use: "create", Short: "Hold every line or nothing", Args: cobra.NoArgs,
		Example: "  holdfast hold create --holder alice --pool concert:2 --units A-1,A-2 --any riders:1 --ttl 5m",
		RunE: func(cmd *cobra.Command, _ []string) error {
			r, err := hf.request()
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			h, err := f.client().Hold(cmd.Context(), r)
			if err != nil {
				return err
			}
			f.print(e.stdout, h, holdHeader, holdRows(h)...)
			return nil
		}}
	hf.register(create)
	var ref string
	var pay holdfast.Payment
	confirm := &cobra.Command{Use: "confirm ID", Short: "Confirm a held hold; with --amount, record the payment (captured, or due back if the confirm is refused)", Args: cobra.ExactArgs(1),
		Example: "  holdfast hold confirm h_… --payment-ref pi_123\n  holdfast hold confirm h_… --payment-ref pi_123 --amount 5000 --currency EUR",
		RunE: func(cmd *cobra.Command, args []string) error {
			var h holdfast.Hold
			var err error
			if cmd.Flags().Changed("amount") {
				pay.Ref = ref
				h, err = f.client().ConfirmPaid(cmd.Context(), args[0], pay, nil)
			} else {
				h, err = f.client().Confirm(cmd.Context(), args[0], ref)
			}
			if err != nil {
				return err
			}
			f.print(e.stdout, h, holdHeader, holdRows(h)...)
			return nil
		}}
	confirm.Flags().StringVar(&ref, "payment-ref", "", "your payment reference")
	confirm.Flags().Int64Var(&pay.Amount, "amount", 0, "the payment's amount in minor units (cents): records the payment with the confirm")
	confirm.Flags().StringVar(&pay.Currency, "currency", "EUR", "the payment's currency (ISO 4217)")
	release := &cobra.Command{Use: "release ID", Short: "Release a held hold", Args: cobra.ExactArgs(1),
		Example: "  holdfast hold release h_…",
		RunE: func(cmd *cobra.Command, args []string) error {
			h, err := f.client().Release(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			f.print(e.stdout, h, holdHeader, holdRows(h)...)
			return nil
		}}
	get := &cobra.Command{Use: "get ID", Short: "A hold", Args: cobra.ExactArgs(1), Example: "  holdfast hold get h_… --json",
		RunE: func(cmd *cobra.Command, args []string) error {
			h, err := f.client().GetHold(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			f.print(e.stdout, h, holdHeader, holdRows(h)...)
			return nil
		}}
	var to string
	transfer := &cobra.Command{Use: "transfer ID", Short: "Give a held or confirmed hold to another holder (no capacity moves)", Args: cobra.ExactArgs(1),
		Example: "  holdfast hold transfer h_… --holder bob",
		RunE: func(cmd *cobra.Command, args []string) error {
			h, err := f.client().Transfer(cmd.Context(), args[0], to)
			if err != nil {
				return err
			}
			f.print(e.stdout, h, holdHeader, holdRows(h)...)
			return nil
		}}
	transfer.Flags().StringVar(&to, "holder", "", "the receiver")
	_ = transfer.MarkFlagRequired("holder")
	var pairs string
	exchange := &cobra.Command{Use: "exchange ID", Short: "Swap units of a held or confirmed hold, all pairs or none", Args: cobra.ExactArgs(1),
		Example: "  holdfast hold exchange h_… --units A-3=B-7,A-4=B-8",
		RunE: func(cmd *cobra.Command, args []string) error {
			swaps := map[string]string{}
			for _, p := range list(strings.ReplaceAll(pairs, " ", ",")) {
				old, nu, ok := strings.Cut(p, "=")
				if !ok || old == "" || nu == "" {
					return &exitError{code: 2, err: fmt.Errorf("--units %q: want OLD=NEW pairs, e.g. A-3=B-7", p)}
				}
				swaps[old] = nu
			}
			h, err := f.client().Exchange(cmd.Context(), args[0], swaps)
			if err != nil {
				return err
			}
			f.print(e.stdout, h, holdHeader, holdRows(h)...)
			return nil
		}}
	exchange.Flags().StringVar(&pairs, "units", "", "OLD=NEW pairs, separated by commas or spaces")
	_ = exchange.MarkFlagRequired("units")
	c.AddCommand(create, confirm, release, get, transfer, exchange)
	return c
}

func bookCmd(e env) *cobra.Command {
	var f clientFlags
	var hf holdFlags
	var ref string
	c := &cobra.Command{Use: "book", Short: "Hold and confirm in one step", Args: cobra.NoArgs,
		Example: "  holdfast book --holder bob --pool concert:4 --payment-ref pi_9",
		RunE: func(cmd *cobra.Command, _ []string) error {
			r, err := hf.request()
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			h, err := f.client().Book(cmd.Context(), r, ref)
			if err != nil {
				return err
			}
			f.print(e.stdout, h, holdHeader, holdRows(h)...)
			return nil
		}}
	f.register(c, e)
	hf.register(c)
	c.Flags().StringVar(&ref, "payment-ref", "", "your payment reference")
	return c
}

func keyCmd(e env) *cobra.Command {
	var f clientFlags
	c := &cobra.Command{Use: "key", Short: "Create, list and revoke client API keys (admin)",
		Example: "  holdfast key create --name box-office --key $ADMIN_KEY"}
	f.register(c, e)
	var name, channel string
	var maxHeld int64
	create := &cobra.Command{Use: "create", Short: "Create a client key; it is shown only once", Args: cobra.NoArgs,
		Example: "  holdfast key create --name box-office --max-held-units 50\n  holdfast key create --name reseller --channel presale",
		RunE: func(cmd *cobra.Command, _ []string) error {
			k, err := f.client().CreateKey(cmd.Context(), holdfast.APIKey{Name: name, MaxHeldUnits: maxHeld, Channel: channel})
			if err != nil {
				return err
			}
			f.print(e.stdout, map[string]string{"id": k.ID, "name": name, "key": k.Secret}, "ID\tNAME\tKEY", []string{k.ID, name, k.Secret})
			return nil
		}}
	create.Flags().StringVar(&name, "name", "", "what the key is for")
	create.Flags().Int64Var(&maxHeld, "max-held-units", 0, "the key's quota: tickets and units its holds may have held at once (0: none)")
	create.Flags().StringVar(&channel, "channel", "", "bind the key to a sales channel: it holds and books from the channel's allocations only")
	_ = create.MarkFlagRequired("name")
	quota := &cobra.Command{Use: "quota ID N", Short: "Set a key's quota of held units (0: none)", Args: cobra.ExactArgs(2),
		Example: "  holdfast key quota 7k2mq4xw9a3bc 50",
		RunE: func(cmd *cobra.Command, args []string) error {
			n, err := strconv.ParseInt(args[1], 10, 64)
			if err != nil {
				return &exitError{code: 2, err: fmt.Errorf("quota %q is not a number", args[1])}
			}
			k, err := f.client().SetKeyQuota(cmd.Context(), args[0], n)
			if err != nil {
				return err
			}
			f.print(e.stdout, k, "ID\tNAME\tMAX HELD\tHELD", []string{k.ID, k.Name, i64(k.MaxHeldUnits), i64(k.HeldUnits)})
			return nil
		}}
	list := &cobra.Command{Use: "list", Short: "List the keys (never a secret)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			keys, err := f.client().Keys(cmd.Context())
			if err != nil {
				return err
			}
			rows := make([][]string, len(keys))
			for i, k := range keys {
				rows[i] = []string{k.ID, k.Name, string(k.Role), k.CreatedAt.Format(time.RFC3339), timeOrDash(k.LastUsedAt), timeOrDash(k.RevokedAt), i64(k.MaxHeldUnits), i64(k.HeldUnits)}
			}
			f.print(e.stdout, keys, "ID\tNAME\tROLE\tCREATED\tLAST USED\tREVOKED\tMAX HELD\tHELD", rows...)
			return nil
		}}
	revoke := &cobra.Command{Use: "revoke ID", Short: "Revoke a key for good; every server refuses it within a second", Args: cobra.ExactArgs(1),
		Example: "  holdfast key revoke 7k2mq4xw9a3bc",
		RunE: func(cmd *cobra.Command, args []string) error {
			k, err := f.client().RevokeKey(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			f.print(e.stdout, k, "ID\tNAME\tREVOKED", []string{k.ID, k.Name, timeOrDash(k.RevokedAt)})
			return nil
		}}
	c.AddCommand(create, list, revoke, quota)
	return c
}

func timeOrDash(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.Format(time.RFC3339)
}

func paymentCmd(e env) *cobra.Command {
	var f clientFlags
	c := &cobra.Command{Use: "payment", Short: "Payments recorded with confirms and bookings, and those due back",
		Example: "  holdfast payment list --status refund_due\n  holdfast payment get pi_123\n  holdfast payment refunded pi_123"}
	f.register(c, e)
	rows := func(ps ...holdfast.Payment) [][]string {
		var out [][]string
		for _, p := range ps {
			out = append(out, []string{p.Ref, string(p.Status), i64(p.Amount), p.Currency, p.HoldID, p.Reason})
		}
		return out
	}
	const header = "REF\tSTATUS\tAMOUNT\tCURRENCY\tHOLD\tREASON"
	var status string
	list := &cobra.Command{Use: "list", Short: "Payments, newest first (admin)", Args: cobra.NoArgs,
		Example: "  holdfast payment list --status refund_due",
		RunE: func(cmd *cobra.Command, _ []string) error {
			ps, err := f.client().ListPayments(cmd.Context(), holdfast.PaymentStatus(status))
			if err != nil {
				return err
			}
			f.print(e.stdout, ps, header, rows(ps...)...)
			return nil
		}}
	list.Flags().StringVar(&status, "status", "", "captured, refund_due or refunded (default: all)")
	get := &cobra.Command{Use: "get REF", Short: "A payment", Args: cobra.ExactArgs(1), Example: "  holdfast payment get pi_123",
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := f.client().Payment(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			f.print(e.stdout, p, header, rows(p)...)
			return nil
		}}
	refunded := &cobra.Command{Use: "refunded REF", Short: "Mark a payment due back as refunded (admin)", Args: cobra.ExactArgs(1),
		Example: "  holdfast payment refunded pi_123",
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := f.client().PaymentRefunded(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			f.print(e.stdout, p, header, rows(p)...)
			return nil
		}}
	c.AddCommand(list, get, refunded)
	return c
}
