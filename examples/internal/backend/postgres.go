package backend

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/asyncreq/asyncreq/postgres"
)

// openPostgres keeps every endpoint in one PostgreSQL database, in the
// schema cfg.Schema, each with a queue of its own.
func openPostgres(ctx context.Context, cfg Config) (*Backend, error) {
	pcfg, err := pgxpool.ParseConfig(cfg.Postgres)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	// Room for the workers' calls, the accepts' group commits and the
	// handlers' reads; at most 72 (what 32 workers get), well below
	// PostgreSQL's default max_connections of 100, which other clients of
	// the server share: the Backend's group commits need far fewer
	// connections than calls in flight.
	pcfg.MaxConns = int32(min(72, max(16, 2*cfg.Concurrency+8)))
	if cfg.PostgresConns > 0 {
		pcfg.MaxConns = int32(cfg.PostgresConns)
	}
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres: %w", err)
	}
	if err := postgres.Migrate(ctx, pool, &postgres.Options{Schema: cfg.Schema}); err != nil {
		pool.Close()
		return nil, err
	}
	b := &Backend{}
	b.onClose(pool.Close)
	perEndpoint(b, func(ctx context.Context, name string) (*postgres.Backend, error) {
		return postgres.New(ctx, pool, &postgres.Options{Schema: cfg.Schema, Queue: name, Logger: cfg.Logger})
	})
	return b, nil
}
