// Package testrig holds what the tests stand on and nothing ships: a
// throwaway PostgreSQL (pgtest) and Redis (redistest) per test package,
// PostgreSQL schemas and SQLite files that start migrated (pgtest.Migrated,
// sqlitetest), the schema-drift test
// (schematest) and the signals background services give their tests
// (testsignal).
package testrig
