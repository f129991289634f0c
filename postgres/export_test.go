package postgres

// ReadingRoomsEveryHold is opts for a store that keeps no read of what
// waiting rooms protect: every hold reads it (the race of that read).
func ReadingRoomsEveryHold(opts Options) Options {
	opts.roomsFor = -1
	return opts
}
