package holdfast

import (
	"time"
	"unicode"
	"unicode/utf8"
)

// ValidateID checks a pool, group or unit id: 1–MaxIDLen characters from
// [A-Za-z0-9._:-], so ids are safe in URLs, logs and lock keys.
func ValidateID(what, id string) error {
	if id == "" {
		return Errorf(CodeInvalid, "%s id is required", what)
	}
	if len(id) > MaxIDLen {
		return Errorf(CodeInvalid, "%s id is longer than %d characters", what, MaxIDLen)
	}
	for _, r := range id {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '_', r == ':', r == '-':
		default:
			return Errorf(CodeInvalid, "%s id %q may only contain letters, digits and . _ : -", what, id)
		}
	}
	return nil
}

// ValidateName checks a name (of a pool, group or key): at most
// MaxNameLen characters of UTF-8 text, no control characters.
func ValidateName(what, s string, required bool) error {
	return validateText(what, s, MaxNameLen, required)
}

func validateText(what, s string, max int, required bool) error {
	if required && s == "" {
		return Errorf(CodeInvalid, "%s is required", what)
	}
	if !utf8.ValidString(s) {
		return Errorf(CodeInvalid, "%s is not valid UTF-8", what)
	}
	if n := utf8.RuneCountInString(s); n > max {
		return Errorf(CodeInvalid, "%s is %d characters, more than %d", what, n, max)
	}
	blank := true
	for _, r := range s {
		switch {
		case r < 0x20 || (r >= 0x7f && r <= 0x9f):
			return Errorf(CodeInvalid, "%s contains a control character", what)
		case bidiControl(r):
			// A name shown to people must read as it is stored.
			return Errorf(CodeInvalid, "%s contains a bidirectional control character", what)
		case !unicode.IsSpace(r):
			blank = false
		}
	}
	if s != "" && blank {
		return Errorf(CodeInvalid, "%s is blank", what)
	}
	return nil
}

// bidiControl reports the characters that reorder displayed text.
func bidiControl(r rune) bool {
	return r == 0x061c || r == 0x200e || r == 0x200f || (r >= 0x202a && r <= 0x202e) || (r >= 0x2066 && r <= 0x2069)
}

// Validate checks a pool to be created.
func (p Pool) Validate() error {
	if err := ValidateID("pool", p.ID); err != nil {
		return err
	}
	if err := validateText("name", p.Name, MaxNameLen, false); err != nil {
		return err
	}
	if err := ValidateCapacity(p.Capacity); err != nil {
		return err
	}
	if p.PerHolderLimit < 0 || p.PerHolderLimit > MaxCapacity {
		return Errorf(CodeInvalid, "per_holder_limit must be between 0 (no limit) and %d", int64(MaxCapacity))
	}
	if p.OfferTTLSeconds < 0 || p.OfferTTLSeconds > 86400 {
		return Errorf(CodeInvalid, "offer_ttl_seconds must be from 0 (the default, %v) to 86400", DefaultOfferTTL)
	}
	return nil
}

// ValidateCapacity checks a pool capacity.
func ValidateCapacity(c int64) error {
	if c < 0 || c > MaxCapacity {
		return Errorf(CodeInvalid, "capacity must be between 0 and %d", int64(MaxCapacity))
	}
	return nil
}

// Validate checks a group to be created.
func (g Group) Validate() error {
	if err := ValidateID("group", g.ID); err != nil {
		return err
	}
	if g.Layout != nil {
		if err := g.Layout.Validate(); err != nil {
			return err
		}
	}
	return validateText("name", g.Name, MaxNameLen, false)
}

// ValidateUnitIDs checks ids to be added to a group: valid, bounded, distinct.
func ValidateUnitIDs(ids []string) error {
	if len(ids) == 0 {
		return Errorf(CodeInvalid, "ids must name at least one unit")
	}
	if len(ids) > MaxUnitsPerAdd {
		return Errorf(CodeInvalid, "at most %d units per call", MaxUnitsPerAdd)
	}
	seen := make(map[string]bool, len(ids))
	for _, id := range ids {
		if err := ValidateID("unit", id); err != nil {
			return err
		}
		if seen[id] {
			return Errorf(CodeInvalid, "unit %q is named twice", id)
		}
		seen[id] = true
	}
	return nil
}

// ValidateHolder checks a holder reference: 1–MaxHolderLen characters.
func ValidateHolder(h string) error { return validateText("holder", h, MaxHolderLen, true) }

// ValidatePaymentRef checks an optional payment reference.
func ValidatePaymentRef(ref string) error {
	return validateText("payment_ref", ref, MaxPaymentRef, false)
}

// ValidateTTL checks a requested hold lifetime against c (with defaults):
// 0 is allowed where the default applies (allowZero), otherwise 1 s to MaxTTL.
func (c Config) ValidateTTL(ttl time.Duration, allowZero bool) error {
	if ttl == 0 && allowZero {
		return nil
	}
	if ttl < time.Second || ttl > c.MaxTTL {
		return Errorf(CodeInvalid, "ttl must be between 1 and %d seconds", int64(c.MaxTTL/time.Second))
	}
	return nil
}

// Validate checks a hold request against c: holder, TTL, 1–MaxLines lines each
// of exactly one form with bounded quantities, no unit named twice and no
// pool on two lines (one line per pool keeps the per-holder limit and the
// lock order simple). Errors name the offending line.
func (r HoldRequest) Validate(c Config) error {
	if err := ValidateHolder(r.Holder); err != nil {
		return err
	}
	if err := c.ValidateTTL(r.TTL, true); err != nil {
		return err
	}
	if len(r.Lines) == 0 {
		return Errorf(CodeInvalid, "a hold needs at least one line")
	}
	if len(r.Lines) > MaxLines {
		return Errorf(CodeInvalid, "a hold has at most %d lines", MaxLines)
	}
	units := map[string]bool{}
	pools := map[string]bool{}
	for i, l := range r.Lines {
		if l.Together && l.Kind() != LineAny {
			return LineErrorf(CodeInvalid, i, "together goes with a {group, any} line")
		}
		if l.Channel != "" {
			if err := ValidateID("channel", l.Channel); err != nil {
				return LineErrorf(CodeInvalid, i, "%s", err.(*Error).Message)
			}
		}
		switch l.Kind() {
		case LinePool:
			if err := ValidateID("pool", l.Pool); err != nil {
				return LineErrorf(CodeInvalid, i, "%s", err.(*Error).Message)
			}
			if l.Quantity < 1 || l.Quantity > MaxQuantity {
				return LineErrorf(CodeInvalid, i, "quantity must be between 1 and %d", MaxQuantity)
			}
			if pools[l.Pool] {
				return LineErrorf(CodeInvalid, i, "pool %q is on two lines", l.Pool)
			}
			pools[l.Pool] = true
		case LineAny:
			if l.Units != nil {
				return LineErrorf(CodeInvalid, i, "a line has exactly one form: {pool, quantity}, {units} or {group, any}")
			}
			if err := ValidateID("group", l.Group); err != nil {
				return LineErrorf(CodeInvalid, i, "%s", err.(*Error).Message)
			}
			if l.Any < 1 || l.Any > MaxUnitsOnLine {
				return LineErrorf(CodeInvalid, i, "any must be between 1 and %d", MaxUnitsOnLine)
			}
		case LineUnits:
			if len(l.Units) > MaxUnitsOnLine {
				return LineErrorf(CodeInvalid, i, "a line names at most %d units", MaxUnitsOnLine)
			}
			for _, u := range l.Units {
				if err := ValidateID("unit", u); err != nil {
					return LineErrorf(CodeInvalid, i, "%s", err.(*Error).Message)
				}
				if units[u] {
					return LineErrorf(CodeInvalid, i, "unit %q is named twice", u)
				}
				units[u] = true
			}
		default:
			return LineErrorf(CodeInvalid, i, "a line has exactly one form: {pool, quantity}, {units} or {group, any}")
		}
	}
	return nil
}

// Validate checks named units to be set aside: a group, a channel, 1 to
// MaxUnitsPerAdd valid unit ids, none twice.
func (r UnitAllocationRequest) Validate() error {
	if err := ValidateID("group", r.Group); err != nil {
		return err
	}
	if err := ValidateID("channel", r.Channel); err != nil {
		return err
	}
	if len(r.Units) == 0 {
		return Errorf(CodeInvalid, "units: name at least one unit")
	}
	if len(r.Units) > MaxUnitsPerAdd {
		return Errorf(CodeInvalid, "at most %d units per call", MaxUnitsPerAdd)
	}
	seen := make(map[string]bool, len(r.Units))
	for _, u := range r.Units {
		if err := ValidateID("unit", u); err != nil {
			return err
		}
		if seen[u] {
			return Errorf(CodeInvalid, "unit %q is named twice", u)
		}
		seen[u] = true
	}
	return nil
}

// Validate checks an allocation to be set.
func (r AllocationRequest) Validate() error {
	if err := ValidateID("pool", r.Pool); err != nil {
		return err
	}
	if err := ValidateID("channel", r.Channel); err != nil {
		return err
	}
	if r.Quantity < 0 || r.Quantity > MaxCapacity {
		return Errorf(CodeInvalid, "quantity must be between 0 and %d", int64(MaxCapacity))
	}
	return nil
}
