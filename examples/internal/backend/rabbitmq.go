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
	byName := map[string]*rabbitmq.Queue{}
	storeOf := b.pair
	b.pair = func(ctx context.Context, name string) (asyncreq.Store, asyncreq.Queue, error) {
		store, _, err := storeOf(ctx, name)
		if err != nil {
			return nil, nil, err
		}
		mu.Lock()
		defer mu.Unlock()
		if q, ok := byName[name]; ok {
			return store, q, nil
		}
		q, err := rabbitmq.Open(ctx, cfg.AMQP, &rabbitmq.Options{
			Queue:    "asyncreq_" + name,
			Prefetch: cfg.Concurrency,
			Logger:   cfg.Logger,
		})
		if err != nil {
			return nil, nil, err
		}
		byName[name] = q
		b.onClose(func() { _ = q.Close() })
		return store, q, nil
	}
	return nil
}
