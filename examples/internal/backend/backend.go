// Package backend opens the asyncreq.Backend that the example programs run
// on, chosen by name: memory, sqlite, postgres, redis or nats, with an
// optional RabbitMQ queue in front of any of them.
package backend

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/asyncreq/asyncreq"
	"github.com/asyncreq/asyncreq/memory"
)

// Config says which engine to open and where it is.
type Config struct {
	// Name is the engine: one of Names().
	Name string
	// SQLitePath is the database file of the sqlite engine.
	SQLitePath string
	// Postgres, Redis and NATS are the URLs of those engines.
	Postgres string
	Redis    string
	NATS     string
	// Schema is the PostgreSQL schema of the postgres engine's tables.
	// Default "asyncreq".
	Schema string
	// PostgresConns caps the postgres engine's connections. Default
	// max(16, 2×Concurrency+8).
	PostgresConns int
	// RedisPrefix starts every key of the redis engine. Default "asyncreq:".
	RedisPrefix string
	// AMQP, if set, is a RabbitMQ URL: the queues are RabbitMQ queues and
	// the engine named by Name keeps the records.
	AMQP string
	// Lease is the workers' LeaseDuration; engines whose lease is fixed
	// when they are opened (the NATS consumer's ack wait) use it. Default 30s.
	Lease time.Duration
	// Concurrency is the workers' Concurrency; the RabbitMQ prefetch and
	// the connection pools are sized by it. Default 10.
	Concurrency int
	// Defaults opens every engine with its package's default options: only
	// what this Config names (queue names, lease, prefetch) and the
	// connection pool sizes are set. Otherwise an engine may be tuned for
	// the machine the figures in docs/benchmarks.md come from (see its
	// opener); none is at present, since every tuning that measured better
	// became its package's default.
	Defaults bool
	// Logger receives the engines' logs.
	Logger *slog.Logger
}

// Backend hands out an asyncreq.Backend per endpoint on one engine.
type Backend struct {
	endpoint func(ctx context.Context, name string) (asyncreq.Backend, error)
	closes   []func()
}

// Endpoint returns the asyncreq.Backend of the endpoint with the given
// name. Endpoints have queues of their own, so that a worker only gets the
// requests of its endpoint. The Backend closes it.
func (b *Backend) Endpoint(ctx context.Context, name string) (asyncreq.Backend, error) {
	return b.endpoint(ctx, name)
}

// Close releases every connection the Backend opened, newest first.
func (b *Backend) Close() {
	for i := len(b.closes) - 1; i >= 0; i-- {
		b.closes[i]()
	}
}

func (b *Backend) onClose(f func()) { b.closes = append(b.closes, f) }

// engine is a backend that is both the Store and the Queue of an endpoint,
// and holds connections until it is closed.
type engine interface {
	asyncreq.Backend
	io.Closer
}

// perEndpoint makes b hand out one engine per endpoint name, made by open
// when the name is first asked for and closed with b.
func perEndpoint[E engine](b *Backend, open func(ctx context.Context, name string) (E, error)) {
	var mu sync.Mutex
	byName := map[string]E{}
	b.endpoint = func(ctx context.Context, name string) (asyncreq.Backend, error) {
		mu.Lock()
		defer mu.Unlock()
		e, ok := byName[name]
		if !ok {
			var err error
			if e, err = open(ctx, name); err != nil {
				return nil, err
			}
			byName[name] = e
			b.onClose(func() { _ = e.Close() })
		}
		return e, nil
	}
}

type opener func(ctx context.Context, cfg Config) (*Backend, error)

var openers = map[string]opener{
	"memory":   openMemory,
	"nats":     openNATS,
	"postgres": openPostgres,
	"redis":    openRedis,
	"sqlite":   openSQLite,
}

// Names lists the engines Open knows, comma-separated.
func Names() string {
	names := make([]string, 0, len(openers))
	for n := range openers {
		names = append(names, n)
	}
	slices.Sort(names)
	return strings.Join(names, ", ")
}

// Open opens the engine cfg names.
func Open(ctx context.Context, cfg Config) (*Backend, error) {
	open, ok := openers[cfg.Name]
	if !ok {
		return nil, fmt.Errorf("unknown backend %q (want one of %s)", cfg.Name, Names())
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Lease <= 0 {
		cfg.Lease = 30 * time.Second
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 10
	}
	b, err := open(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if cfg.AMQP != "" {
		if err := withRabbitMQ(ctx, b, cfg); err != nil {
			b.Close()
			return nil, err
		}
	}
	return b, nil
}

// openMemory keeps everything in this process: nothing survives a restart.
func openMemory(context.Context, Config) (*Backend, error) {
	b := &Backend{}
	perEndpoint(b, func(context.Context, string) (*memory.Backend, error) { return memory.New(nil), nil })
	return b, nil
}
