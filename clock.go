package holdfast

import (
	"sync/atomic"
	"time"
)

// Nothing holdfast decides depends on an app server's clock: expiry is
// decided by the database's clock, in the statement that confirms or
// reclaims. An app server's wall clock only stamps hold ids (for sort
// order) and audit reports.

var clockSkew atomic.Int64

// SetClockSkew shifts the wall clock holdfast reads by d. It exists to
// prove the point above under faults: the chaos harness runs one server
// with its clock minutes off and checks that no outcome changes. (A
// LD_PRELOAD clock shifter such as faketime cannot reach a Go program,
// which reads the clock without libc.)
func SetClockSkew(d time.Duration) { clockSkew.Store(int64(d)) }

// Now is the wall clock holdfast reads: time.Now, plus any skew set.
func Now() time.Time { return time.Now().Add(time.Duration(clockSkew.Load())) }
