package http

import (
	"context"
	"errors"
	"log/slog"
	"net/http"

	"github.com/holdfast/holdfast"
)

// Codes the HTTP layer adds to the domain's.
const (
	CodeUnauthorized       holdfast.Code = "unauthorized"
	CodeForbidden          holdfast.Code = "forbidden"
	CodeTooLarge           holdfast.Code = "too_large"
	CodeRateLimited        holdfast.Code = "rate_limited"
	CodeMethodNotAllowed   holdfast.Code = "method_not_allowed"
	CodeUnavailableService holdfast.Code = "service_unavailable"
	// CodeUnsupportedMediaType: a request body that is not JSON.
	CodeUnsupportedMediaType holdfast.Code = "unsupported_media_type"
	// CodeMisdirected: an open server asked for by a name that is not
	// loopback (DNS rebinding).
	CodeMisdirected holdfast.Code = "misdirected_request"
	// CodeCrossSite: an open server called from another site's page.
	CodeCrossSite holdfast.Code = "cross_site_request"
	// CodeTooManyStreams: the key, or the server, has its most event
	// streams open.
	CodeTooManyStreams holdfast.Code = "too_many_streams"

	CodeIdempotencyMismatch = holdfast.CodeIdempotencyMismatch
	CodeIdempotencyInFlight = holdfast.CodeIdempotencyInFlight
)

// statusOf is the one table from error code to HTTP status.
var statusOf = map[holdfast.Code]int{
	holdfast.CodeInvalid:           http.StatusBadRequest,
	holdfast.CodeUnsupported:       http.StatusBadRequest,
	CodeUnauthorized:               http.StatusUnauthorized,
	CodeForbidden:                  http.StatusForbidden,
	holdfast.CodeNotFound:          http.StatusNotFound,
	CodeMethodNotAllowed:           http.StatusMethodNotAllowed,
	holdfast.CodeSoldOut:           http.StatusConflict,
	holdfast.CodeUnavailable:       http.StatusConflict,
	holdfast.CodeHoldExpired:       http.StatusConflict,
	holdfast.CodeInvalidState:      http.StatusConflict,
	holdfast.CodeLimitExceeded:     http.StatusConflict,
	holdfast.CodeQuotaExceeded:     http.StatusConflict,
	holdfast.CodeAdmissionRequired: http.StatusForbidden,
	holdfast.CodeAdmissionInvalid:  http.StatusForbidden,
	holdfast.CodeNotSoldOut:        http.StatusConflict,
	holdfast.CodeCursorExpired:     http.StatusGone,
	holdfast.CodeConflict:          http.StatusConflict,
	CodeIdempotencyInFlight:        http.StatusConflict,
	CodeTooLarge:                   http.StatusRequestEntityTooLarge,
	CodeIdempotencyMismatch:        http.StatusUnprocessableEntity,
	CodeRateLimited:                http.StatusTooManyRequests,
	holdfast.CodeInternal:          http.StatusInternalServerError,
	holdfast.CodeBusy:              http.StatusServiceUnavailable,
	CodeUnavailableService:         http.StatusServiceUnavailable,
	CodeUnsupportedMediaType:       http.StatusUnsupportedMediaType,
	CodeMisdirected:                http.StatusMisdirectedRequest,
	CodeCrossSite:                  http.StatusForbidden,
	CodeTooManyStreams:             http.StatusTooManyRequests,
}

var titles = map[holdfast.Code]string{
	holdfast.CodeInvalid:           "The request is invalid",
	holdfast.CodeUnsupported:       "Not supported",
	CodeUnauthorized:               "An API key is required",
	CodeForbidden:                  "This key may not do that",
	holdfast.CodeNotFound:          "Not found",
	CodeMethodNotAllowed:           "Method not allowed",
	holdfast.CodeSoldOut:           "Sold out",
	holdfast.CodeUnavailable:       "Unavailable",
	holdfast.CodeHoldExpired:       "The hold has expired",
	holdfast.CodeInvalidState:      "Not allowed in the hold's state",
	holdfast.CodeLimitExceeded:     "Per-holder limit exceeded",
	holdfast.CodeQuotaExceeded:     "The key's quota of held units is used up",
	holdfast.CodeAdmissionRequired: "A waiting room protects this sale",
	holdfast.CodeAdmissionInvalid:  "The admission is not valid",
	holdfast.CodeNotSoldOut:        "Not sold out: hold it instead",
	holdfast.CodeCursorExpired:     "The cursor points before the events still kept",
	holdfast.CodeConflict:          "Conflict",
	CodeIdempotencyInFlight:        "A request with this Idempotency-Key is in flight",
	CodeTooLarge:                   "The request body is too large",
	CodeIdempotencyMismatch:        "The Idempotency-Key was used for a different request",
	CodeRateLimited:                "Too many requests",
	holdfast.CodeInternal:          "Internal error",
	holdfast.CodeBusy:              "Try again",
	CodeUnavailableService:         "Service unavailable",
	CodeUnsupportedMediaType:       "The request body must be application/json",
	CodeMisdirected:                "This server answers on loopback names only",
	CodeCrossSite:                  "Cross-site requests are refused",
	CodeTooManyStreams:             "Too many event streams open",
}

// Problem is an RFC 9457 problem detail with holdfast's stable code, and
// the failing hold line when there is one.
type Problem struct {
	Type   string        `json:"type"`
	Title  string        `json:"title"`
	Status int           `json:"status"`
	Detail string        `json:"detail,omitempty"`
	Code   holdfast.Code `json:"code"`
	Line   *int          `json:"line,omitempty"`
	// Reclaimable is false on a late confirm refused under the
	// if_available policy (see holdfast.LatePolicy).
	Reclaimable *bool `json:"reclaimable,omitempty"`
	// Room, on admission_required, is the waiting room to join.
	Room string `json:"room,omitempty"`
}

// problemOf turns an error into the problem the client sees. Internal
// errors are logged in full and shown as a generic message.
func problemOf(err error, log *slog.Logger) Problem {
	code := holdfast.ErrorCode(err)
	if code == holdfast.CodeInternal && (errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)) {
		// The request's deadline passed (or its client left) before the
		// database answered: retryable, never a 500.
		code = holdfast.CodeBusy
	}
	status, ok := statusOf[code]
	if !ok {
		code, status = holdfast.CodeInternal, http.StatusInternalServerError
	}
	p := Problem{Type: "https://holdfast.dev/problems/" + string(code), Title: titles[code], Status: status, Code: code}
	var he *holdfast.Error
	switch {
	case code == holdfast.CodeInternal:
		log.Error("internal error", "err", err)
		p.Detail = "something went wrong on our side; it has been logged"
	case code == holdfast.CodeBusy:
		log.Warn("request could not finish in time", "err", err)
		p.Detail = "the request did not finish before its deadline; retry with the same Idempotency-Key"
	case errors.As(err, &he):
		p.Detail = he.Message
		if he.Line >= 0 {
			line := he.Line
			p.Line = &line
		}
		p.Reclaimable, p.Room = he.Reclaimable, he.Room
	}
	return p
}

func writeProblem(w http.ResponseWriter, p Problem) {
	writeBody(w, p.Status, encode(p), true)
}
