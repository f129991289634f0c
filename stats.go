package holdfast

// Stats is what a SQL backend reports for metrics: its connection pool,
// the transactions it retried, and the coalesced batches it ran.
type Stats struct {
	Retries                int64
	Open, InUse, Idle, Max int
	// Batches is how many coalesced transactions ran, deciding
	// BatchedClaims claims between them.
	Batches, BatchedClaims int64
	// ChangeBatches is how many batched transactions of lifecycle changes
	// (confirm, release, extend, cancel, complete) ran, deciding
	// BatchedChanges changes between them.
	ChangeBatches, BatchedChanges int64
	// ClaimStatements and ChangeStatements are the statements those
	// batches sent: per batch, they do not grow with its size.
	ClaimStatements, ChangeStatements int64
	// OfferRounds is how many rounds of waitlist offers were written (each
	// one transaction), making Offers offers between them with
	// OfferStatements statements.
	OfferRounds, Offers, OfferStatements int64
	// BatchFailures counts batches that failed whole (their claims then
	// went one by one); it should stay 0.
	BatchFailures int64
	// PoolMarks is how many pools the store keeps in memory (sold-out
	// marks, for a second each): never more than the pools that exist.
	PoolMarks int
}

// StatsReporter is a store that reports Stats (the sqlite and postgres
// stores do).
type StatsReporter interface {
	// Stats reports the connection pool, transaction retries and batches
	// so far (CapStats).
	Stats() Stats
}
