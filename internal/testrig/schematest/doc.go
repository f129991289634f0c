// Package schematest holds the test that the SQLite and PostgreSQL schemas
// do not drift apart: after migration, both have the same tables, columns,
// keys, checks, foreign keys and indexes, but for the dialect differences
// it lists.
package schematest
