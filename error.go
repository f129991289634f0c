package holdfast

import (
	"errors"
	"fmt"
)

// Code is a stable, lowercase error code. Clients branch on it; the HTTP layer
// maps it to a status. Codes never change meaning once published.
type Code string

const (
	CodeSoldOut       Code = "sold_out"       // a pool line found too little capacity
	CodeUnavailable   Code = "unavailable"    // a unit line found its units taken
	CodeHoldExpired   Code = "hold_expired"   // the hold's expires_at has passed
	CodeInvalidState  Code = "invalid_state"  // the change is not allowed from the hold's state
	CodeLimitExceeded Code = "limit_exceeded" // a per-holder limit would be passed
	CodeQuotaExceeded Code = "quota_exceeded" // the API key's quota of held units would be passed
	CodeCursorExpired Code = "cursor_expired" // the feed cursor points before the events still kept
	CodeNotFound      Code = "not_found"      // no such pool, group, unit or hold
	CodeInvalid       Code = "invalid"        // the input is malformed or out of bounds
	CodeConflict      Code = "conflict"       // the id already exists, or capacity is below what is taken
	CodeUnsupported   Code = "unsupported"    // the backend does not offer this strategy
	CodeInternal      Code = "internal"       // anything else: logged in full, shown generically
	CodeBusy          Code = "busy"           // the deadline passed before the database answered

	CodeAdmissionRequired Code = "admission_required" // a waiting room protects the pool or group: join it
	CodeAdmissionInvalid  Code = "admission_invalid"  // the admission is another holder's, another room's, expired, used or unknown
	CodeNotSoldOut        Code = "not_sold_out"       // a waitlist join for what can be held now: hold instead
)

// Error is the error every holdfast operation returns for an expected failure.
// Test for a kind with errors.Is against the sentinels (ErrSoldOut, …): two
// *Error values match when their codes match.
type Error struct {
	Code    Code
	Message string
	// Line is the index, in request order, of the hold line that failed, or -1.
	Line int
	// Reclaimable, on a hold_expired refusal of a confirm under the
	// if_available late-confirm policy, is false: the capacity is gone or
	// the grace has passed. nil everywhere else.
	Reclaimable *bool
	// Room, on admission_required, is the room to join.
	Room string
}

func (e *Error) Error() string {
	msg := e.Message
	if msg == "" {
		msg = string(e.Code)
	}
	if e.Line >= 0 {
		return fmt.Sprintf("line %d: %s", e.Line, msg)
	}
	return msg
}

// Is reports whether target is an *Error with the same code, so that
// errors.Is(err, holdfast.ErrSoldOut) works on any wrapped *Error.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code
}

// Sentinels for errors.Is. Never return them directly when there is a better
// message: use Errorf or LineErrorf.
var (
	ErrSoldOut       = &Error{Code: CodeSoldOut, Line: -1}
	ErrUnavailable   = &Error{Code: CodeUnavailable, Line: -1}
	ErrHoldExpired   = &Error{Code: CodeHoldExpired, Line: -1}
	ErrInvalidState  = &Error{Code: CodeInvalidState, Line: -1}
	ErrLimitExceeded = &Error{Code: CodeLimitExceeded, Line: -1}
	ErrQuotaExceeded = &Error{Code: CodeQuotaExceeded, Line: -1}
	ErrNotFound      = &Error{Code: CodeNotFound, Line: -1}
	ErrInvalid       = &Error{Code: CodeInvalid, Line: -1}
	ErrConflict      = &Error{Code: CodeConflict, Line: -1}
	ErrUnsupported   = &Error{Code: CodeUnsupported, Line: -1}
	ErrBusy          = &Error{Code: CodeBusy, Line: -1}
	// ErrCursorExpired: a feed cursor from before the oldest event kept
	// (Purge deleted what it pointed past).
	ErrCursorExpired = &Error{Code: CodeCursorExpired, Line: -1}
)

// Errorf returns an *Error with code and a formatted message.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...), Line: -1}
}

// LineErrorf returns an *Error naming the failing hold line (index in request order).
func LineErrorf(code Code, line int, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...), Line: line}
}

// CodeOf is ErrorCode: the stable code of err ("" for nil), for a switch
// over refusals.
func CodeOf(err error) Code { return ErrorCode(err) }

// ErrorCode returns the code of err: the code of the first *Error in its chain,
// CodeInternal for any other non-nil error, "" for nil.
func ErrorCode(err error) Code {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return CodeInternal
}

// ErrorLine returns the failing line index carried by err, or -1.
func ErrorLine(err error) int {
	var e *Error
	if errors.As(err, &e) {
		return e.Line
	}
	return -1
}
