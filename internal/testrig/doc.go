// Package testrig holds what the tests stand on and nothing ships: a
// throwaway PostgreSQL (pgtest) and Redis (redistest) per test package,
// SQLite files that start migrated (sqlitetest), the schema-drift test
// (schematest) and the signals background services give their tests
// (testsignal).
package testrig
