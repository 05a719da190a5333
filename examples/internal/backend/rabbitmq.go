package backend

import (
	"context"
	"sync"

	"github.com/asyncreq/asyncreq"
	"github.com/asyncreq/asyncreq/rabbitmq"
)

// withRabbitMQ replaces the queues of b by RabbitMQ quorum queues, one per
// endpoint; b's engine keeps the records.
func withRabbitMQ(ctx context.Context, b *Backend, cfg Config) error {
	// Connect once up front so that a bad URL fails at start.
	probe, err := rabbitmq.Open(ctx, cfg.AMQP, &rabbitmq.Options{Queue: "asyncreq_probe", Logger: cfg.Logger})
	if err != nil {
		return err
	}
	_ = probe.Close()
	var mu sync.Mutex
	byName := map[string]asyncreq.Backend{}
	storeOf := b.endpoint
	b.endpoint = func(ctx context.Context, name string) (asyncreq.Backend, error) {
		store, err := storeOf(ctx, name)
		if err != nil {
			return nil, err
		}
		mu.Lock()
		defer mu.Unlock()
		if p, ok := byName[name]; ok {
			return p, nil
		}
		q, err := rabbitmq.Open(ctx, cfg.AMQP, &rabbitmq.Options{
			Queue:    "asyncreq_" + name,
			Prefetch: cfg.Concurrency,
			Logger:   cfg.Logger,
		})
		if err != nil {
			return nil, err
		}
		b.onClose(func() { _ = q.Close() })
		// The engine keeps the records; RabbitMQ says what to work on.
		p := asyncreq.Pair(store, q)
		byName[name] = p
		return p, nil
	}
	return nil
}
