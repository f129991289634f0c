package holdfast

import (
	"context"
	"time"
)

// Payment is money a buyer paid for a hold, recorded once per Ref in the
// same transaction as what it paid for: the confirm (or booking) it
// bought, Captured; or, when that was refused — the hold expired under
// late_confirm refuse, its capacity was gone, it was already confirmed —
// RefundDue, with the event payment.refund_due. Every payment so ends as
// a ticket or a refund; the shop marks it Refunded when it has paid back.
type Payment struct {
	Ref      string        `json:"ref"`
	Amount   int64         `json:"amount"`   // in the currency's minor unit (cents)
	Currency string        `json:"currency"` // ISO 4217, three capital letters
	Status   PaymentStatus `json:"status"`
	// HoldID is the hold it paid for ("" for a booking that was refused
	// before a hold existed).
	HoldID string `json:"hold_id"`
	// Reason says why a payment is due back: the refusal's code and text.
	Reason    string    `json:"reason,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// PaymentStatus is where a payment stands.
type PaymentStatus string

const (
	PaymentCaptured  PaymentStatus = "captured"
	PaymentRefundDue PaymentStatus = "refund_due"
	PaymentRefunded  PaymentStatus = "refunded"
)

// Payment events: a payment that bought nothing is due back; the shop
// refunded it.
const (
	EventPaymentRefundDue EventType = "payment.refund_due"
	EventPaymentRefunded  EventType = "payment.refunded"
)

// MaxPaymentAmount bounds an amount (minor units).
const MaxPaymentAmount = 1 << 50

// Validate checks a payment as sent: its ref, amount and currency.
func (p Payment) Validate() error {
	if p.Ref == "" {
		return Errorf(CodeInvalid, "payment.ref is required")
	}
	if err := ValidatePaymentRef(p.Ref); err != nil {
		return err
	}
	if p.Amount < 0 || p.Amount > MaxPaymentAmount {
		return Errorf(CodeInvalid, "payment.amount must be an integer from 0 to %d (minor units)", int64(MaxPaymentAmount))
	}
	if len(p.Currency) != 3 || !isUpper(p.Currency) {
		return Errorf(CodeInvalid, "payment.currency must be an ISO 4217 code: three capital letters")
	}
	return nil
}

func isUpper(s string) bool {
	for _, r := range s {
		if r < 'A' || r > 'Z' {
			return false
		}
	}
	return true
}

// Payments are confirms and bookings paid for, and what is owed back.
type Payments interface {
	// ConfirmPaid is ConfirmPart (part nil: the whole hold) with the
	// payment recorded, Captured, in the same transaction; a refusal
	// records it RefundDue (and writes payment.refund_due) before it is
	// returned. The same payment again on the same confirmed hold is a
	// replay: the hold, nothing recorded twice. ErrConflict if the ref was
	// recorded for another hold or is already due back.
	ConfirmPaid(ctx context.Context, id string, p Payment, part []PartLine) (Hold, error)
	// BookPaid is Book with the payment recorded as ConfirmPaid does.
	BookPaid(ctx context.Context, r HoldRequest, p Payment) (Hold, error)
	// Payment returns a payment by ref. ErrNotFound.
	Payment(ctx context.Context, ref string) (Payment, error)
	// ListPayments lists payments, newest first, of one status if status
	// is not "" (at most 1,000). ErrInvalid for an unknown status.
	ListPayments(ctx context.Context, status PaymentStatus) ([]Payment, error)
	// PaymentRefunded marks a payment due back as refunded (the shop paid
	// it back) and writes payment.refunded. ErrInvalidState unless it was
	// RefundDue (refunded again: the same answer); ErrNotFound.
	PaymentRefunded(ctx context.Context, ref string) (Payment, error)
}
