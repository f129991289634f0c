package holdfast

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
)

// A waiting room's draw, which anyone can check. When a room is created
// it draws a 32-byte random seed and publishes its SHA-256 (the
// commitment) before anyone joins. Those who join before opens_at are
// ordered by HMAC-SHA256(key = the seed's bytes, message = the ticket
// id), in hex, ascending; at opens_at the seed is revealed. The operator
// cannot choose the seed after seeing who joined (the commitment fixes
// it), and cannot move a ticket (its HMAC is the buyer's to recompute).

// NewSeed draws a room's seed, hex.
func NewSeed() string {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("holdfast: no randomness: " + err.Error())
	}
	return hex.EncodeToString(b[:])
}

// SeedCommitment is the hex SHA-256 of a hex seed's bytes.
func SeedCommitment(seed string) string {
	b, _ := hex.DecodeString(seed)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// DrawOrder is a ticket's key in the draw: hex HMAC-SHA256 with the
// seed's bytes as the key and the ticket id as the message.
func DrawOrder(seed, ticket string) string {
	key, _ := hex.DecodeString(seed)
	m := hmac.New(sha256.New, key)
	m.Write([]byte(ticket))
	return hex.EncodeToString(m.Sum(nil))
}

// TicketSHA256 is how a draw names a ticket: the hex SHA-256 of its id.
func TicketSHA256(ticket string) string {
	sum := sha256.Sum256([]byte(ticket))
	return hex.EncodeToString(sum[:])
}

// VerifyDraw checks a published draw against the room's commitment: the
// seed hashes to the commitment, the entries are in ascending draw order
// with places 1, 2, 3…, as many as Total, and where an entry shows its
// ticket (the admin's view) its hash and HMAC are recomputed. mine, if
// not empty, is a ticket id whose entry must be there with its HMAC. It
// returns the first difference found.
func VerifyDraw(commitment string, d RoomDraw, mine string) error {
	if commitment == "" {
		return fmt.Errorf("the room has no seed commitment (made before draws existed)")
	}
	if d.SeedCommitment != commitment {
		return fmt.Errorf("the draw names commitment %s, the room %s", d.SeedCommitment, commitment)
	}
	if got := SeedCommitment(d.Seed); got != commitment {
		return fmt.Errorf("the seed %s hashes to %s, not the commitment %s", d.Seed, got, commitment)
	}
	if len(d.Entries) != d.Total {
		return fmt.Errorf("the draw lists %d tickets but says %d", len(d.Entries), d.Total)
	}
	found := mine == ""
	for i, e := range d.Entries {
		if e.Place != int64(i+1) {
			return fmt.Errorf("entry %d has place %d, want %d", i+1, e.Place, i+1)
		}
		if i > 0 && strings.Compare(d.Entries[i-1].Draw, e.Draw) >= 0 {
			return fmt.Errorf("place %d (draw %s) does not come after place %d (draw %s)", e.Place, e.Draw, i, d.Entries[i-1].Draw)
		}
		if e.Ticket != "" {
			if got := TicketSHA256(e.Ticket); got != e.TicketSHA256 {
				return fmt.Errorf("place %d: ticket %s hashes to %s, the draw says %s", e.Place, e.Ticket, got, e.TicketSHA256)
			}
			if got := DrawOrder(d.Seed, e.Ticket); got != e.Draw {
				return fmt.Errorf("place %d: ticket %s draws %s, the draw says %s", e.Place, e.Ticket, got, e.Draw)
			}
		}
		if mine != "" && e.TicketSHA256 == TicketSHA256(mine) {
			if got := DrawOrder(d.Seed, mine); got != e.Draw {
				return fmt.Errorf("your ticket draws %s, the draw says %s (place %d)", got, e.Draw, e.Place)
			}
			found = true
		}
	}
	if !found {
		return fmt.Errorf("your ticket is not in the draw (it lists those who joined before opening)")
	}
	return nil
}
