package holdfast

import (
	"crypto/rand"
	"encoding/base32"
	"encoding/binary"
	"time"
)

var idEncoding = base32.NewEncoding("0123456789abcdefghjkmnpqrstvwxyz").WithPadding(base32.NoPadding)

// NewHoldID returns a new hold id made at now: "h_" and 26 characters, 48
// bits of millisecond time (so ids sort by creation) and 80 random bits
// (so ids from many servers never collide and cannot be guessed).
func NewHoldID(now time.Time) string { return NewID("h_", now) }

// NewID returns a new id made at now, as NewHoldID does, with prefix.
func NewID(prefix string, now time.Time) string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(now.UnixMilli())<<16)
	_, _ = rand.Read(b[6:])
	return prefix + idEncoding.EncodeToString(b[:])
}
