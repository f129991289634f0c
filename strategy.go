package holdfast

import "strings"

// Strategy names how a claim is made atomic. The SQL behind each lives in the
// storage packages; this package only names them and says what each does.
type Strategy string

const (
	// Atomic takes capacity with one conditional UPDATE … WHERE available >= q
	// RETURNING and checks the rows affected: the database decides, no
	// read-then-write window exists. The default.
	Atomic Strategy = "atomic"
	// Pessimistic locks the row (SELECT … FOR UPDATE; on SQLite BEGIN
	// IMMEDIATE), checks, writes, commits.
	Pessimistic Strategy = "pessimistic"
	// Optimistic compares and swaps a version column, retrying with jitter.
	Optimistic Strategy = "optimistic"
	// Serializable runs the check and write in a SERIALIZABLE transaction,
	// retrying serialization failures with jitter.
	Serializable Strategy = "serializable"
	// Advisory serializes claims on a resource with pg_advisory_xact_lock.
	Advisory Strategy = "advisory"
	// RedisLock serializes claims with a Redis lock whose fencing token the
	// database checks.
	RedisLock Strategy = "redislock"
	// Unsafe is check-then-act with no lock. It exists only to show the race.
	Unsafe Strategy = "unsafe"
)

// Strategies lists every strategy name, in the order the lab shows them.
var Strategies = []Strategy{Atomic, Pessimistic, Optimistic, Serializable, Advisory, RedisLock, Unsafe}

// ParseStrategy returns the named strategy; "" means Atomic.
func ParseStrategy(s string) (Strategy, error) {
	if s == "" {
		return Atomic, nil
	}
	for _, st := range Strategies {
		if string(st) == strings.ToLower(s) {
			return st, nil
		}
	}
	return "", Errorf(CodeInvalid, "unknown strategy %q", s)
}
