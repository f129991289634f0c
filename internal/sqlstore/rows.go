package sqlstore

import (
	"strconv"
	"strings"
)

// rowSet is the rows of one multi-row statement, held column by column,
// which the statement reads as the table v (see with).
//
// On PostgreSQL (Dialect.ArrayRows) the rows go as one array a column,
// unnested by the statement: its text is the same whatever the number of
// rows, so each connection prepares and plans it once. Sent as VALUES
// lists, every batch size was a statement of its own — 50 to 120 texts
// for each of a batch's writes, each prepared on every connection and
// planned anew for its first executions there: 14 % of PostgreSQL's CPU in
// the riders shape went to planning them. SQLite takes VALUES lists,
// which it parses in microseconds.
type rowSet struct {
	names string   // the columns' names in v, "id, hold_id, channel"
	types []string // their SQL types (text, bigint, integer, boolean, bytea)
	cols  [][]any  // cols[c]: column c's values, nil for NULL
}

// newRows makes an empty set of rows of columns names (comma-separated)
// of types, one a column.
func newRows(names string, types ...string) rowSet {
	return rowSet{names: names, types: types, cols: make([][]any, len(types))}
}

// add appends a row: one value a column, in order.
func (r *rowSet) add(vals ...any) {
	if len(vals) != len(r.cols) {
		panic("sqlstore: a row of " + strconv.Itoa(len(vals)) + " values for " + strconv.Itoa(len(r.cols)) + " columns")
	}
	for c, v := range vals {
		r.cols[c] = append(r.cols[c], v)
	}
}

// len is the number of rows.
func (r *rowSet) len() int {
	if len(r.cols) == 0 {
		return 0
	}
	return len(r.cols[0])
}

// with is the common table expression `v (names) AS (…)` of the rows, its
// parameters numbered from $first, and their arguments.
func (r *rowSet) with(d Dialect, first int) (string, []any) {
	var b strings.Builder
	b.WriteString("v (" + r.names + ") AS (")
	if d.ArrayRows {
		b.WriteString("SELECT * FROM unnest(")
		for c, t := range r.types {
			if c > 0 {
				b.WriteString(", ")
			}
			b.WriteString("$" + strconv.Itoa(first+c) + "::" + t + "[]")
		}
		b.WriteString("))")
		args := make([]any, len(r.cols))
		for c, vals := range r.cols {
			args[c] = vals
		}
		return b.String(), args
	}
	b.WriteString("VALUES ")
	n := r.len()
	args := make([]any, 0, n*len(r.cols))
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("(" + params(first+len(args), len(r.cols)) + ")")
		for c := range r.cols {
			args = append(args, r.cols[c][i])
		}
	}
	b.WriteString(")")
	return b.String(), args
}

// stmt is the statement `WITH v (…) AS (…) ` + sql, which reads the rows
// as v and has no parameters of its own.
func (r *rowSet) stmt(d Dialect, sql string) Stmt {
	cte, args := r.with(d, 1)
	return Stmt{"WITH " + cte + "\n" + sql, args}
}

// query is stmt's text and arguments as a Query with scan.
func (r *rowSet) query(d Dialect, sql string, scan func(Row) error) Query {
	st := r.stmt(d, sql)
	return Query{st.SQL, st.Args, scan}
}
