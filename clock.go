package holdfast

import "time"

// Nothing holdfast decides depends on an app server's clock: expiry is
// decided by the database's clock, in the statement that confirms or
// reclaims. An app server's wall clock only stamps hold ids (for sort
// order) and audit reports. It is injected (the stores' Options.Clock),
// so the chaos harness can run one server with its clock minutes off
// (serve --clock-skew) and check that no outcome changes, and a simulation
// can move time by hand.

// Clock reads the time; nil means time.Now.
type Clock func() time.Time

// Now reads c, or time.Now if c is nil.
func (c Clock) Now() time.Time {
	if c == nil {
		return time.Now()
	}
	return c()
}
