// Package pgtest gives each test package a fresh PostgreSQL database and
// each test a fresh schema in it, so no test depends on state left by
// another or by an earlier run.
//
// The server comes from HOLDFAST_TEST_POSTGRES (a URL with rights to create
// databases), defaulting to the loopback server `make test` makes sure of.
// If no server answers, tests skip with a message saying how to run them —
// except under CI=true, where a missing service fails the run.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// DefaultURL is the server `make test` starts or finds.
const DefaultURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// DB is one test package's database.
type DB struct {
	url     *url.URL // of the package's database
	admin   string   // of the server's maintenance database
	name    string
	skip    string // why tests skip, when the server is missing
	schemas atomic.Int64
}

// New creates a fresh database for the package. Call it from TestMain and
// Close it there after m.Run.
func New() *DB {
	admin := os.Getenv("HOLDFAST_TEST_POSTGRES")
	if admin == "" {
		admin = DefaultURL
	}
	d := &DB{admin: admin}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		d.skip = fmt.Sprintf("PostgreSQL not reachable at %s (%v); run `make test`, which starts one, or set HOLDFAST_TEST_POSTGRES", redact(admin), err)
		if os.Getenv("CI") == "true" {
			fmt.Fprintln(os.Stderr, "pgtest: CI=true and", d.skip)
			os.Exit(1)
		}
		return d
	}
	defer conn.Close(ctx)
	var b [6]byte
	_, _ = rand.Read(b[:])
	d.name = "holdfast_test_" + hex.EncodeToString(b[:])
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+d.name); err != nil {
		fmt.Fprintln(os.Stderr, "pgtest: create database:", err)
		os.Exit(1)
	}
	u, err := url.Parse(admin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "pgtest:", err)
		os.Exit(1)
	}
	u.Path = "/" + d.name
	d.url = u
	return d
}

// Close drops the package's database.
func (d *DB) Close() {
	if d.name == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, d.admin)
	if err != nil {
		return
	}
	defer conn.Close(ctx)
	_, _ = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+d.name+" WITH (FORCE)")
}

// Schema creates a fresh schema for one test and returns a URL whose
// connections use it (search_path), so migrations and every table land there.
func (d *DB) Schema(t testing.TB) string {
	t.Helper()
	if d.url == nil {
		t.Skip(d.skip)
	}
	name := fmt.Sprintf("t%d", d.schemas.Add(1))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, d.url.String())
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+name); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	u := *d.url
	q := u.Query()
	q.Set("search_path", name)
	u.RawQuery = q.Encode()
	return u.String()
}

func redact(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}

// Main is a test package's TestMain: it makes the package's database,
// stores it in *db, runs the tests, drops the database and exits.
func Main(m *testing.M, db **DB) {
	*db = New()
	code := m.Run()
	(*db).Close()
	os.Exit(code)
}
