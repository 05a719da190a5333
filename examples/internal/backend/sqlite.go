package backend

import (
	"context"
	"sync"

	"github.com/asyncreq/asyncreq"
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
	var mu sync.Mutex
	byName := map[string]*sqlite.Backend{}
	b.pair = func(ctx context.Context, name string) (asyncreq.Store, asyncreq.Queue, error) {
		mu.Lock()
		defer mu.Unlock()
		if s, ok := byName[name]; ok {
			return s, s, nil
		}
		s, err := sqlite.Open(ctx, cfg.SQLitePath, &sqlite.Options{Queue: name})
		if err != nil {
			return nil, nil, err
		}
		byName[name] = s
		b.onClose(func() { _ = s.Close() })
		return s, s, nil
	}
	return b, nil
}
