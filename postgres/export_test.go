package postgres

// Uncached is opts for a store that keeps none of what every request
// reads (what waiting rooms protect, the feed's purge watermark): every
// request reads them (the races of those reads).
func Uncached(opts Options) Options {
	opts.cacheFor = -1
	return opts
}
