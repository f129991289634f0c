package holdfasttest

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/holdfast/holdfast"
)

func eur(ref string, amount int64) holdfast.Payment {
	return holdfast.Payment{Ref: ref, Amount: amount, Currency: "EUR"}
}

// mustPayment reads a payment and checks its status and hold.
func mustPayment(t *testing.T, s holdfast.Store, ref string, status holdfast.PaymentStatus, hold string) holdfast.Payment {
	t.Helper()
	p, err := s.Payment(ctxT(t), ref)
	if err != nil {
		t.Fatalf("payment %s: %v", ref, err)
	}
	if p.Status != status || p.HoldID != hold {
		t.Fatalf("payment %s is %s for hold %q, want %s for %q: %+v", ref, p.Status, p.HoldID, status, hold, p)
	}
	return p
}

// Every payment ends as a ticket or a refund: recorded captured with the
// confirm or booking it paid for, or due back when that was refused —
// expired, already confirmed, sold out, cancelled — once per ref; a
// retry is a replay, a ref on another hold a conflict.
func testPayments(t *testing.T, h Harness) {
	s, _ := h.Open(t)
	ctx := ctxT(t)
	MustCreatePool(t, s, "p", 10, 0)
	h1 := MustHold(t, s, "ann", holdfast.Line{Pool: "p", Quantity: 2})
	got, err := s.ConfirmPaid(ctx, h1.ID, eur("pi_1", 5000), nil)
	if err != nil || got.Status != holdfast.StatusConfirmed || got.PaymentRef != "pi_1" {
		t.Fatalf("a paid confirm: %+v, %v", got, err)
	}
	p := mustPayment(t, s, "pi_1", holdfast.PaymentCaptured, h1.ID)
	if p.Amount != 5000 || p.Currency != "EUR" {
		t.Fatalf("payment pi_1: %+v", p)
	}
	// The same payment again: a replay, nothing recorded twice.
	if again, err := s.ConfirmPaid(ctx, h1.ID, eur("pi_1", 5000), nil); err != nil || again.Status != holdfast.StatusConfirmed {
		t.Fatalf("the same payment again: %+v, %v", again, err)
	}
	// A second payment for a hold already confirmed is due back.
	_, err = s.ConfirmPaid(ctx, h1.ID, eur("pi_2", 5000), nil)
	wantCode(t, err, holdfast.CodeInvalidState, -1)
	if due := mustPayment(t, s, "pi_2", holdfast.PaymentRefundDue, h1.ID); !strings.HasPrefix(due.Reason, "invalid_state") {
		t.Fatalf("pi_2's reason: %q", due.Reason)
	}
	// A payment after the hold expired (late_confirm refuse) is due back,
	// once, however often it is retried.
	h2 := MustHold(t, s, "bob", holdfast.Line{Pool: "p", Quantity: 1})
	MustExpire(t, s, h2.ID)
	for range 2 {
		_, err = s.ConfirmPaid(ctx, h2.ID, eur("pi_3", 2500), nil)
		wantCode(t, err, holdfast.CodeHoldExpired, -1)
	}
	mustPayment(t, s, "pi_3", holdfast.PaymentRefundDue, h2.ID)
	// A ref recorded for one hold cannot pay for another.
	h3 := MustHold(t, s, "cat", holdfast.Line{Pool: "p", Quantity: 1})
	_, err = s.ConfirmPaid(ctx, h3.ID, eur("pi_1", 5000), nil)
	wantCode(t, err, holdfast.CodeConflict, -1)
	if g, _ := s.GetHold(ctx, h3.ID); g.Status != holdfast.StatusHeld {
		t.Fatalf("a confirm with a used ref changed the hold: %+v", g)
	}
	// Bad payments are refused and recorded nowhere.
	for _, bad := range []holdfast.Payment{{Ref: "", Amount: 1, Currency: "EUR"}, {Ref: "pi_x", Amount: -1, Currency: "EUR"}, {Ref: "pi_x", Amount: 1, Currency: "eur"}} {
		_, err = s.ConfirmPaid(ctx, h3.ID, bad, nil)
		wantCode(t, err, holdfast.CodeInvalid, -1)
	}
	_, err = s.Payment(ctx, "pi_x")
	wantCode(t, err, holdfast.CodeNotFound, -1)

	// Bookings: paid, recorded with the booking; refused, due back.
	MustCreatePool(t, s, "one", 1, 0)
	b, err := s.BookPaid(ctx, holdfast.HoldRequest{Holder: "dan", Lines: pl("one", 1)}, eur("pi_4", 900))
	if err != nil || b.Status != holdfast.StatusConfirmed {
		t.Fatalf("a paid booking: %+v, %v", b, err)
	}
	mustPayment(t, s, "pi_4", holdfast.PaymentCaptured, b.ID)
	_, err = s.BookPaid(ctx, holdfast.HoldRequest{Holder: "eve", Lines: pl("one", 1)}, eur("pi_5", 900))
	wantCode(t, err, holdfast.CodeSoldOut, 0)
	mustPayment(t, s, "pi_5", holdfast.PaymentRefundDue, "")
	_, err = s.BookPaid(ctx, holdfast.HoldRequest{Holder: "eve", Lines: pl("p", 1)}, eur("pi_4", 900))
	wantCode(t, err, holdfast.CodeConflict, -1)

	// A cancel is a refund: its payment is due back.
	if _, err := s.Cancel(ctx, h1.ID); err != nil {
		t.Fatal(err)
	}
	mustPayment(t, s, "pi_1", holdfast.PaymentRefundDue, h1.ID)

	// The shop refunds what is due; once refunded it stays so.
	for range 2 {
		if r, err := s.PaymentRefunded(ctx, "pi_3"); err != nil || r.Status != holdfast.PaymentRefunded {
			t.Fatalf("refunded: %+v, %v", r, err)
		}
	}
	_, err = s.PaymentRefunded(ctx, "pi_4")
	wantCode(t, err, holdfast.CodeInvalidState, -1)
	_, err = s.PaymentRefunded(ctx, "nope")
	wantCode(t, err, holdfast.CodeNotFound, -1)

	due, err := s.ListPayments(ctx, holdfast.PaymentRefundDue)
	if err != nil {
		t.Fatal(err)
	}
	var refs []string
	for _, p := range due {
		refs = append(refs, p.Ref)
	}
	if slices.Sort(refs); strings.Join(refs, ",") != "pi_1,pi_2,pi_5" {
		t.Fatalf("due back: %v, want pi_1, pi_2 and pi_5", refs)
	}
	_, err = s.ListPayments(ctx, "owed")
	wantCode(t, err, holdfast.CodeInvalid, -1)
	if r := MustAuditClean(t, s); r.Payments != 5 {
		t.Fatalf("the audit counts %d payments, want 5", r.Payments)
	}
	// The audit finds a payment that is neither a ticket nor a refund.
	MustExec(t, s, `UPDATE payments SET status = 'captured' WHERE ref = 'pi_3'`)
	if r, err := s.Audit(ctx); err != nil || r.OK() {
		t.Fatalf("a captured payment on an expired hold passed the audit: %+v, %v", r, err)
	}
}

// Paid confirms race the sweepers expiring their holds, on several
// servers: each payment ends exactly once, captured on a confirmed hold
// or due back on an expired one.
func racePaymentVsSweeper(t *testing.T, h Harness) {
	stores := instances(t, h, 3)
	ctx := ctxT(t)
	s := stores[0]
	const n = 45
	MustCreatePool(t, s, "p", n, 0)
	ids := make([]string, n)
	for i := range ids {
		ids[i] = MustHold(t, s, fmt.Sprintf("b-%d", i), holdfast.Line{Pool: "p", Quantity: 1}).ID
		// Expiring within the next few tens of milliseconds, while the
		// confirms and the sweepers run.
		MustExec(t, s, fmt.Sprintf(`UPDATE holds SET expires_at = holdfast_now_ms() + %d WHERE id = $1`, 5+i%30), ids[i])
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for k := range stores {
		untilStopped(&wg, stop, func() bool {
			if _, err := stores[k].ExpireDue(ctx, 10); err != nil {
				t.Errorf("ExpireDue: %v", err)
				return false
			}
			return true
		})
	}
	results := make([]error, n)
	storm(n, func(i int) {
		time.Sleep(time.Duration(i%30) * time.Millisecond) // spread across the expiries (timing, not synchronisation)
		_, results[i] = stores[i%len(stores)].ConfirmPaid(ctx, ids[i], eur(fmt.Sprint("pi_", i), 100), nil)
	})
	close(stop)
	wg.Wait()
	for i, err := range results {
		got, gerr := s.GetHold(ctx, ids[i])
		if gerr != nil {
			t.Fatal(gerr)
		}
		ref := fmt.Sprint("pi_", i)
		switch holdfast.ErrorCode(err) {
		case "":
			if got.Status != holdfast.StatusConfirmed {
				t.Fatalf("acknowledged paid confirm of hold %d reads %s", i, got.Status)
			}
			mustPayment(t, s, ref, holdfast.PaymentCaptured, ids[i])
		case holdfast.CodeHoldExpired:
			if got.Status == holdfast.StatusConfirmed {
				t.Fatalf("hold %d refused as expired reads confirmed", i)
			}
			mustPayment(t, s, ref, holdfast.PaymentRefundDue, ids[i])
		default:
			t.Fatalf("paid confirm of hold %d: %v", i, err)
		}
		if c := MustCount(t, s, `SELECT COUNT(*) FROM events WHERE subject = $1 AND type = 'payment.refund_due'`, ref); c > 1 {
			t.Fatalf("payment %s has %d refund_due events", ref, c)
		}
	}
	if c := MustCount(t, s, `SELECT COUNT(*) FROM payments`); c != n {
		t.Fatalf("%d payments recorded for %d paid confirms", c, n)
	}
	MustAuditClean(t, s)
}
