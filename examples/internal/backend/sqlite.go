package backend

import (
	"context"

	"github.com/asyncreq/asyncreq/sqlite"
)

// openSQLite keeps every endpoint in one SQLite file, each with a queue of
// its own.
func openSQLite(ctx context.Context, cfg Config) (*Backend, error) {
	// Open once up front so that a bad path fails at start, not on first use.
	first, err := sqlite.Open(ctx, cfg.SQLitePath, nil)
	if err != nil {
		return nil, err
	}
	b := &Backend{}
	b.onClose(func() { _ = first.Close() })
	perEndpoint(b, func(ctx context.Context, name string) (*sqlite.Backend, error) {
		return sqlite.Open(ctx, cfg.SQLitePath, &sqlite.Options{Queue: name})
	})
	return b, nil
}
