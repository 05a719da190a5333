package backend

import (
	"context"
	"fmt"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/asyncreq/asyncreq/nats"
)

// openNATS keeps every endpoint on one NATS server, each in a key-value
// bucket and a work-queue stream of its own.
func openNATS(ctx context.Context, cfg Config) (*Backend, error) {
	nc, err := natsgo.Connect(cfg.NATS, natsgo.Name("asyncreq-example"))
	if err != nil {
		return nil, fmt.Errorf("nats: %w", err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("nats: %w", err)
	}
	b := &Backend{}
	b.onClose(nc.Close)
	perEndpoint(b, func(ctx context.Context, name string) (*nats.Backend, error) {
		return nats.New(ctx, js, &nats.Options{
			Bucket:   "asyncreq_" + name,
			Stream:   "asyncreq_" + name,
			Subject:  "asyncreq." + name,
			Consumer: "asyncreq_" + name,
			// The lease is the consumer's ack wait: the worker's lease
			// extensions must come well within it.
			AckWait: cfg.Lease,
		})
	})
	return b, nil
}
