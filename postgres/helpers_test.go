package postgres_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"testing"
	"time"

	"github.com/asyncreq/asyncreq"
	"github.com/asyncreq/asyncreq/postgres"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// dsnEnv names the environment variable with the URL of the database the
// integration tests use.
const dsnEnv = "ASYNCREQ_TEST_POSTGRES"

// testDSN returns the test database's URL, or skips t.
func testDSN(t testing.TB) string {
	t.Helper()
	dsn := os.Getenv(dsnEnv)
	if dsn == "" {
		t.Skip(dsnEnv + " is not set; set it to a PostgreSQL URL such as " +
			"postgres://postgres@127.0.0.1:5432/test?sslmode=disable to run the PostgreSQL integration tests")
	}
	return dsn
}

// newPool returns a pool on the test database with at most maxConns
// connections, closed when t ends.
func newPool(t testing.TB, maxConns int32) *pgxpool.Pool {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(testDSN(t))
	require.NoError(t, err)
	cfg.MaxConns = maxConns
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	return pool
}

// newSchema returns the name of a fresh schema that is dropped when t
// ends. The schema itself is created by Migrate.
func newSchema(t testing.TB, pool *pgxpool.Pool) string {
	t.Helper()
	var b [6]byte
	_, _ = rand.Read(b[:])
	schema := "asyncreq_test_" + hex.EncodeToString(b[:])
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, err := pool.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE")
		if err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
	})
	return schema
}

// newStore returns a Backend on a fresh schema of its own, closed when t
// ends. opts may be nil; its Schema is replaced.
func newStore(t testing.TB, opts *postgres.Options) (*postgres.Backend, *pgxpool.Pool) {
	t.Helper()
	pool := newPool(t, 8)
	return newStoreOn(t, pool, newSchema(t, pool), opts), pool
}

// newStoreOn returns a Backend on pool and schema, migrating it, closed when
// t ends.
func newStoreOn(t testing.TB, pool *pgxpool.Pool, schema string, opts *postgres.Options) *postgres.Backend {
	t.Helper()
	var o postgres.Options
	if opts != nil {
		o = *opts
	}
	o.Schema = schema
	o.MigrateOnStart = true
	s, err := postgres.New(t.Context(), pool, &o)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, s.Close()) })
	return s
}

// testRecord returns a pending record as a handler would make it.
func testRecord(owner, key string, body []byte) *asyncreq.Record {
	now := time.Now().UTC()
	return &asyncreq.Record{
		ID:             asyncreq.NewID(),
		Owner:          owner,
		IdempotencyKey: key,
		BodyHash:       hex.EncodeToString(body),
		State:          asyncreq.StatePending,
		Method:         "POST",
		URL:            "/jobs",
		ContentType:    "application/octet-stream",
		Body:           body,
		CreatedAt:      now,
		UpdatedAt:      now,
		Retention:      time.Hour,
		TombstoneTTL:   24 * time.Hour,
	}
}
