package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/holdfast/holdfast"
)

// Payments. A confirm or booking that carries a payment records it in its
// own transaction — captured, with what it bought — or, when it is
// refused, records it due back (refund_due, event payment.refund_due) in
// the transaction right after the refusal, once per ref: a ref is the
// table's key, so a payment ends exactly once as a ticket or a refund,
// whoever races it (the sweeper expiring the hold, a retry, another
// server). Paid bookings are captured in the claim batches' writes
// (writer.go), paid confirms in the batches of changes' (changewrite.go);
// a ref recorded already sends its change to the careful path, which
// answers a replay or the conflict.

type payKey struct{}

// paying is the payment a booking records, if any.
func paying(ctx context.Context) *holdfast.Payment {
	p, _ := ctx.Value(payKey{}).(*holdfast.Payment)
	return p
}

// capture records p as captured for hold id. A plain insert: a ref
// recorded meanwhile fails it, and the change with it.
func capture(id string, p holdfast.Payment) Stmt {
	return Stmt{`INSERT INTO payments (ref, hold_id, amount, currency, status, created_at, updated_at)
		VALUES ($1, $2, $3, $4, 'captured', holdfast_now_ms(), holdfast_now_ms())`, []any{p.Ref, id, p.Amount, p.Currency}}
}

// paidBefore reports whether p was recorded for hold id and captured (a
// replay); a ref recorded otherwise is a conflict.
func (s *Store) paidBefore(ctx context.Context, tx Querier, id string, p holdfast.Payment) (bool, error) {
	var holdID, status string
	var amount int64
	var currency string
	found, err := queryRow(ctx, tx, `SELECT hold_id, status, amount, currency FROM payments WHERE ref = $1`+s.d.ForUpdate,
		[]any{p.Ref}, &holdID, &status, &amount, &currency)
	if err != nil || !found {
		return false, err
	}
	same := holdID == id && amount == p.Amount && currency == p.Currency
	switch {
	case same && holdfast.PaymentStatus(status) == holdfast.PaymentCaptured:
		return true, nil
	case same:
		// Refused before, on this hold: the same refusal again, whatever
		// the hold could do now (the payment is due back already).
		var reason string
		if _, err := queryRow(ctx, tx, `SELECT reason FROM payments WHERE ref = $1`, []any{p.Ref}, &reason); err != nil {
			return false, err
		}
		if code, msg, ok := strings.Cut(reason, ": "); ok && refusal[holdfast.Code(code)] {
			return false, holdfast.Errorf(holdfast.Code(code), "%s (payment %q is due back)", msg, p.Ref)
		}
	}
	return false, usedRef(p.Ref, holdID, status)
}

func usedRef(ref, holdID, status string) error {
	if holdID == "" {
		return holdfast.Errorf(holdfast.CodeConflict, "payment %q is recorded already (%s)", ref, status)
	}
	return holdfast.Errorf(holdfast.CodeConflict, "payment %q is recorded already, for hold %s (%s)", ref, holdID, status)
}

func (s *Store) ConfirmPaid(ctx context.Context, id string, p holdfast.Payment, part []holdfast.PartLine) (holdfast.Hold, error) {
	if err := p.Validate(); err != nil {
		return holdfast.Hold{}, err
	}
	h, err := s.confirm(ctx, id, p.Ref, part, &p)
	return h, s.afterPayment(ctx, id, p, err)
}

func (s *Store) BookPaid(ctx context.Context, r holdfast.HoldRequest, p holdfast.Payment) (holdfast.Hold, error) {
	if err := p.Validate(); err != nil {
		return holdfast.Hold{}, err
	}
	if err := r.Validate(s.cfg); err != nil {
		return holdfast.Hold{}, err
	}
	// A ref recorded already is refused before anything is taken (and a
	// race to record it fails the booking's own insert).
	var holdID, status string
	if found, err := queryRow(ctx, s.db, `SELECT hold_id, status FROM payments WHERE ref = $1`, []any{p.Ref}, &holdID, &status); err != nil {
		return holdfast.Hold{}, err
	} else if found {
		return holdfast.Hold{}, usedRef(p.Ref, holdID, status)
	}
	h, err := s.hold(context.WithValue(ctx, payKey{}, &p), r, true, p.Ref)
	return h, s.afterPayment(ctx, h.ID, p, err)
}

// afterPayment turns a paid change's error into its answer: a ref that
// was recorded meanwhile is a conflict; a refusal records the payment
// due back before it is returned. Anything else (busy, a lost
// connection) has no outcome to record: a retry decides.
func (s *Store) afterPayment(ctx context.Context, id string, p holdfast.Payment, err error) error {
	if err == nil {
		return nil
	}
	if s.d.Classify(err) == KindUnique {
		return refRecorded(p.Ref)
	}
	var he *holdfast.Error
	if !errors.As(err, &he) || !refusal[he.Code] {
		return err
	}
	if rerr := s.refundDue(ctx, id, p, he); rerr != nil {
		return fmt.Errorf("%w (and recording its payment as due back failed: %v)", err, rerr)
	}
	return err
}

// refRecorded is the answer to a payment whose ref another hold's payment
// recorded first.
func refRecorded(ref string) error {
	return holdfast.Errorf(holdfast.CodeConflict, "payment %q is recorded already", ref)
}

// refusal are the answers that end a paid change without what it paid
// for: its payment is due back.
var refusal = map[holdfast.Code]bool{
	holdfast.CodeHoldExpired: true, holdfast.CodeInvalidState: true, holdfast.CodeNotFound: true,
	holdfast.CodeSoldOut: true, holdfast.CodeUnavailable: true, holdfast.CodeLimitExceeded: true,
	holdfast.CodeQuotaExceeded: true, holdfast.CodeAdmissionRequired: true, holdfast.CodeAdmissionInvalid: true,
}

// refundDue records p as due back, once: a ref recorded already (the
// refusal of a retry) is left as it is.
func (s *Store) refundDue(ctx context.Context, id string, p holdfast.Payment, why *holdfast.Error) error {
	return s.db.Transact(ctx, func(tx Querier) error {
		n, err := tx.Exec(ctx, `INSERT INTO payments (ref, hold_id, amount, currency, status, reason, created_at, updated_at)
			VALUES ($1, $2, $3, $4, 'refund_due', $5, holdfast_now_ms(), holdfast_now_ms()) ON CONFLICT (ref) DO NOTHING`,
			p.Ref, id, p.Amount, p.Currency, string(why.Code)+": "+why.Message)
		if err != nil || n == 0 {
			return err
		}
		due, err := s.payment(ctx, tx, p.Ref)
		if err != nil {
			return err
		}
		return s.event(ctx, tx, holdfast.EventPaymentRefundDue, id, p.Ref, due)
	})
}

const paymentColumns = `ref, hold_id, amount, currency, status, reason, created_at, updated_at`

func scanPayment(r Row) (holdfast.Payment, error) {
	var p holdfast.Payment
	var status string
	var created, updated int64
	err := r.Scan(&p.Ref, &p.HoldID, &p.Amount, &p.Currency, &status, &p.Reason, &created, &updated)
	p.Status, p.CreatedAt, p.UpdatedAt = holdfast.PaymentStatus(status), msTime(created), msTime(updated)
	return p, err
}

func (s *Store) payment(ctx context.Context, q Reader, ref string) (holdfast.Payment, error) {
	p, err := scanPayment(q.QueryRow(ctx, `SELECT `+paymentColumns+` FROM payments WHERE ref = $1`, ref))
	if errors.Is(err, ErrNoRows) {
		return p, holdfast.Errorf(holdfast.CodeNotFound, "payment %q not found", ref)
	}
	return p, err
}

func (s *Store) Payment(ctx context.Context, ref string) (holdfast.Payment, error) {
	if ref == "" || holdfast.ValidatePaymentRef(ref) != nil {
		return holdfast.Payment{}, holdfast.Errorf(holdfast.CodeNotFound, "payment %q not found", ref)
	}
	return s.payment(ctx, s.db, ref)
}

func (s *Store) ListPayments(ctx context.Context, status holdfast.PaymentStatus) ([]holdfast.Payment, error) {
	switch status {
	case "", holdfast.PaymentCaptured, holdfast.PaymentRefundDue, holdfast.PaymentRefunded:
	default:
		return nil, holdfast.Errorf(holdfast.CodeInvalid, "status must be captured, refund_due or refunded")
	}
	return collect(ctx, s.db, scanPayment, `SELECT `+paymentColumns+` FROM payments WHERE $1 = '' OR status = $1
		ORDER BY created_at DESC, ref DESC LIMIT 1000`, string(status))
}

func (s *Store) PaymentRefunded(ctx context.Context, ref string) (holdfast.Payment, error) {
	if ref == "" || holdfast.ValidatePaymentRef(ref) != nil {
		return holdfast.Payment{}, holdfast.Errorf(holdfast.CodeNotFound, "payment %q not found", ref)
	}
	var out holdfast.Payment
	err := s.db.Transact(ctx, func(tx Querier) error {
		n, err := tx.Exec(ctx, `UPDATE payments SET status = 'refunded', updated_at = holdfast_now_ms() WHERE ref = $1 AND status = 'refund_due'`, ref)
		if err != nil {
			return err
		}
		if out, err = s.payment(ctx, tx, ref); err != nil {
			return err
		}
		switch {
		case n == 1:
			if err := s.event(ctx, tx, holdfast.EventPaymentRefunded, out.HoldID, ref, out); err != nil {
				return err
			}
		case out.Status != holdfast.PaymentRefunded:
			return holdfast.Errorf(holdfast.CodeInvalidState, "payment %q is %s, not refund_due", ref, out.Status)
		}
		return s.record(ctx, tx, out)
	})
	return out, err
}

// paymentsDueBack marks the captured payments of cancelled holds (a
// cancel is a refund) due back, each with its event, in the cancel's
// transaction.
func (s *Store) paymentsDueBack(ctx context.Context, tx Querier, holds []string) error {
	if len(holds) == 0 {
		return nil
	}
	refs, err := queryStrings(ctx, tx, `SELECT ref FROM payments WHERE hold_id IN (`+s.d.ListSelect(1)+`) AND status = 'captured' ORDER BY ref`, s.d.ListArg(holds))
	if err != nil {
		return err
	}
	for _, ref := range refs {
		if _, err := tx.Exec(ctx, `UPDATE payments SET status = 'refund_due', reason = 'cancelled: the booking was cancelled', updated_at = holdfast_now_ms()
			WHERE ref = $1`, ref); err != nil {
			return err
		}
		p, err := s.payment(ctx, tx, ref)
		if err != nil {
			return err
		}
		if err := s.event(ctx, tx, holdfast.EventPaymentRefundDue, p.HoldID, ref, p); err != nil {
			return err
		}
	}
	return nil
}
