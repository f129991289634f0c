package schematest

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"
	_ "modernc.org/sqlite"

	"github.com/holdfast/holdfast/internal/testrig/pgtest"
	"github.com/holdfast/holdfast/postgres"
	"github.com/holdfast/holdfast/sqlite"
)

var pg *pgtest.DB

func TestMain(m *testing.M) { pgtest.Main(m, &pg) }

// schema is what the test compares: per table, its columns ("name type
// [not null] [pk]"), its CHECK constraints (counted), its foreign keys
// ("column -> table") and its indexes ("name [unique] (cols) [partial]").
type schema map[string]*table

type table struct {
	Columns, ForeignKeys, Indexes []string
	Checks                        int
}

// dialectDifferences are the differences the schemas are allowed: what
// only PostgreSQL needs, and how each writes the same thing.
var dialectDifferences = map[string]string{
	// The feed orders by writing transaction where commits can interleave.
	"postgres events column xid xid8 not null":    "PostgreSQL only",
	"postgres events index events_feed (xid,seq)": "PostgreSQL only",
	// The redislock strategy's fencing tokens (no Redis lock on SQLite).
	"postgres pools column fence bigint not null":  "PostgreSQL only",
	"postgres units column fence bigint not null":  "PostgreSQL only",
	"postgres groups column fence bigint not null": "PostgreSQL only",
	// Two-phase commit across databases: one SQLite file has no other.
	"postgres twophase_decisions checks 0":                                      "PostgreSQL only",
	"postgres twophase_decisions column committed boolean not null":             "PostgreSQL only",
	"postgres twophase_decisions column decided_at bigint not null":             "PostgreSQL only",
	"postgres twophase_decisions column gid text not null pk":                   "PostgreSQL only",
	"postgres shard_members checks 0":                                           "PostgreSQL only (shards)",
	"postgres shard_members column identity text not null":                      "PostgreSQL only (shards)",
	"postgres shard_members column shard integer not null pk":                   "PostgreSQL only (shards)",
	"postgres shard_members index shard_members_identity_key unique (identity)": "PostgreSQL only (shards)",
	"postgres shard_partitions checks 0":                                        "PostgreSQL only (shards)",
	"postgres shard_partitions column created_at bigint not null":               "PostgreSQL only (shards)",
	"postgres shard_partitions column partition text not null pk":               "PostgreSQL only (shards)",
	"postgres shard_partitions column shard integer not null":                   "PostgreSQL only (shards)",
	"postgres shard_partitions foreign key shard -> shard_members":              "PostgreSQL only (shards)",
	"postgres shard_partitions index shard_partitions_shard (shard)":            "PostgreSQL only (shards)",
	"postgres shard_partitions column version bigint not null":                  "PostgreSQL only (shards)",
	"postgres shard_hold_homes checks 0":                                        "PostgreSQL only (shards)",
	"postgres shard_hold_homes column hold_id text not null pk":                 "PostgreSQL only (shards)",
	"postgres shard_hold_homes column shards integer[] not null":                "PostgreSQL only (shards)",
	"postgres shard_placements checks 1":                                        "PostgreSQL only (shards)",
	"postgres shard_placements column id text not null pk":                      "PostgreSQL only (shards)",
	"postgres shard_placements column kind text not null pk":                    "PostgreSQL only (shards)",
	"postgres shard_placements column partition text not null":                  "PostgreSQL only (shards)",
	"postgres shard_placements foreign key partition -> shard_partitions":       "PostgreSQL only (shards)",
	"postgres shard_self checks 1":                                              "PostgreSQL only (shards)",
	"postgres shard_self column identity text not null":                         "PostgreSQL only (shards)",
	"postgres shard_self column only_row boolean not null pk":                   "PostgreSQL only (shards)",
	// AUTOINCREMENT needs SQLite's INTEGER rowid; PostgreSQL's bigserial.
	"sqlite events column seq integer not null pk":  "SQLite's rowid",
	"postgres events column seq bigint not null pk": "PostgreSQL's bigserial",
}

func TestSchemasDoNotDrift(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "holdfast.db")
	s, err := sqlite.Open(ctx, path, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	lite := sqliteSchema(t, db)

	url := pg.Schema(t)
	p, err := postgres.Open(ctx, url, postgres.Options{MaxConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	p.Close()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	pgs := postgresSchema(t, conn)

	liteFacts, pgFacts := facts("sqlite", lite), facts("postgres", pgs)
	var unlisted []string
	for _, f := range liteFacts {
		if other := "postgres" + strings.TrimPrefix(f, "sqlite"); !slices.Contains(pgFacts, other) && dialectDifferences[f] == "" {
			unlisted = append(unlisted, f)
		}
	}
	for _, f := range pgFacts {
		if other := "sqlite" + strings.TrimPrefix(f, "postgres"); !slices.Contains(liteFacts, other) && dialectDifferences[f] == "" {
			unlisted = append(unlisted, f)
		}
	}
	if len(unlisted) > 0 {
		t.Errorf("the schemas differ, and these differences are not listed as dialect differences:\n  %s", strings.Join(unlisted, "\n  "))
	}
	for d := range dialectDifferences {
		if !slices.Contains(liteFacts, d) && !slices.Contains(pgFacts, d) {
			t.Errorf("listed difference %q is in neither schema: remove it", d)
		}
	}
	if len(lite) < 9 {
		t.Fatalf("SQLite schema has %d tables: %s", len(lite), cmp.Diff(nil, lite))
	}
}

// facts flattens a schema into one line per fact, prefixed by the backend.
func facts(backend string, s schema) []string {
	var out []string
	for name, t := range s {
		for _, c := range t.Columns {
			out = append(out, fmt.Sprintf("%s %s column %s", backend, name, c))
		}
		for _, f := range t.ForeignKeys {
			out = append(out, fmt.Sprintf("%s %s foreign key %s", backend, name, f))
		}
		for _, i := range t.Indexes {
			out = append(out, fmt.Sprintf("%s %s index %s", backend, name, i))
		}
		out = append(out, fmt.Sprintf("%s %s checks %d", backend, name, t.Checks))
	}
	slices.Sort(out)
	return out
}

func column(name, typ string, notNull, pk bool) string {
	typ = strings.ToLower(typ)
	if typ == "bytea" {
		typ = "blob"
	}
	c := name + " " + typ
	if notNull || pk {
		c += " not null" // a SQLite text key may hold NULL unless declared; holdfast never writes one
	}
	if pk {
		c += " pk"
	}
	return c
}

func sqliteSchema(t *testing.T, db *sql.DB) schema {
	s := schema{}
	rows := query(t, db, `SELECT name, sql FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name != 'goose_db_version'`)
	for _, r := range rows {
		name, ddl := r[0], r[1]
		tb := &table{Checks: strings.Count(strings.ToUpper(ddl), "CHECK")}
		for _, c := range query(t, db, `SELECT name, type, "notnull", pk FROM pragma_table_info(?)`, name) {
			tb.Columns = append(tb.Columns, column(c[0], c[1], c[2] == "1", c[3] != "0"))
		}
		for _, f := range query(t, db, `SELECT "from", "table" FROM pragma_foreign_key_list(?)`, name) {
			tb.ForeignKeys = append(tb.ForeignKeys, f[0]+" -> "+f[1])
		}
		for _, i := range query(t, db, `SELECT name, "unique", partial FROM pragma_index_list(?) WHERE origin = 'c'`, name) {
			var cols []string
			for _, c := range query(t, db, `SELECT name FROM pragma_index_info(?) ORDER BY seqno`, i[0]) {
				cols = append(cols, c[0])
			}
			tb.Indexes = append(tb.Indexes, index(i[0], i[1] == "1", i[2] == "1", cols))
		}
		s[name] = tb
	}
	return s
}

func index(name string, unique, partial bool, cols []string) string {
	x := name
	if unique {
		x += " unique"
	}
	x += " (" + strings.Join(cols, ",") + ")"
	if partial {
		x += " partial"
	}
	return x
}

func query(t *testing.T, db *sql.DB, q string, args ...any) [][]string {
	t.Helper()
	rows, err := db.Query(q, args...)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	var out [][]string
	for rows.Next() {
		vals := make([]sql.NullString, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		row := make([]string, len(cols))
		for i, v := range vals {
			row[i] = v.String
		}
		out = append(out, row)
	}
	return out
}

func postgresSchema(t *testing.T, conn *pgx.Conn) schema {
	ctx := context.Background()
	s := schema{}
	pgRows := func(q string, args ...any) [][]string {
		t.Helper()
		rows, err := conn.Query(ctx, q, args...)
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		defer rows.Close()
		var out [][]string
		for rows.Next() {
			vals, err := rows.Values()
			if err != nil {
				t.Fatal(err)
			}
			row := make([]string, len(vals))
			for i, v := range vals {
				row[i] = fmt.Sprint(v)
			}
			out = append(out, row)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		return out
	}
	for _, r := range pgRows(`SELECT c.relname FROM pg_class c WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind = 'r' AND c.relname != 'goose_db_version'`) {
		name := r[0]
		tb := &table{}
		for _, c := range pgRows(`SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
				EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = a.attrelid AND i.indisprimary AND a.attnum = ANY (i.indkey))
			FROM pg_attribute a WHERE a.attrelid = (current_schema() || '.' || $1)::regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum`, name) {
			tb.Columns = append(tb.Columns, column(c[0], c[1], c[2] == "true", c[3] == "true"))
		}
		for _, c := range pgRows(`SELECT contype::text, (SELECT string_agg(a.attname, ',') FROM pg_attribute a WHERE a.attrelid = c.conrelid AND a.attnum = ANY (c.conkey)),
				COALESCE((SELECT relname FROM pg_class WHERE oid = c.confrelid), '')
			FROM pg_constraint c WHERE c.conrelid = (current_schema() || '.' || $1)::regclass`, name) {
			switch c[0] {
			case "c":
				tb.Checks++
			case "f":
				tb.ForeignKeys = append(tb.ForeignKeys, c[1]+" -> "+c[2])
			}
		}
		for _, i := range pgRows(`SELECT ic.relname, i.indisunique, i.indpred IS NOT NULL,
				(SELECT string_agg(a.attname, ',' ORDER BY k.n) FROM unnest(i.indkey) WITH ORDINALITY k(attnum, n)
				 JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum)
			FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
			WHERE i.indrelid = (current_schema() || '.' || $1)::regclass AND NOT i.indisprimary`, name) {
			tb.Indexes = append(tb.Indexes, index(i[0], i[1] == "true", i[2] == "true", strings.Split(i[3], ",")))
		}
		s[name] = tb
	}
	return s
}
