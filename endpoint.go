package asyncreq

import (
	"context"
	"errors"
	"net/http"
)

// This file is the one-call setup of the common case: one endpoint whose
// Handler accepts requests and whose Worker processes them, over one
// backend.

// Endpoint is an asynchronous endpoint: an http.Handler serving the HTTP
// contract (a Handler), and the Worker that runs a Processor on what it
// accepts, over the same Backend. Start it before serving, and stop
// it at shutdown after the http.Server:
//
//	ep, err := asyncreq.NewEndpoint(backend, asyncreq.JSONProcessor(render), nil)
//	...
//	if err := ep.Start(ctx); err != nil { ... }
//	defer ep.Stop(context.Background())
//	mux.Handle("/reports/", http.StripPrefix("/reports", ep))
//
// For several endpoints on one backend, or workers in another process,
// use NewHandler and NewWorker, of which an Endpoint is the pair.
type Endpoint struct {
	handler *Handler
	worker  *Worker
}

// EndpointOptions configures an Endpoint. A nil *EndpointOptions means all
// defaults.
type EndpointOptions struct {
	// Handler configures the HTTP side. When its Validate is nil and the
	// Processor is a JSONProcessor, Validate is the processor's own
	// decoding (ValidateJSON), so that a body it would refuse is answered
	// 422 at submit and never stored. The default is HandlerOptions's
	// defaults.
	Handler HandlerOptions
	// Worker configures the Worker. The default is WorkerOptions's
	// defaults.
	Worker WorkerOptions
}

// NewEndpoint returns an Endpoint that accepts requests into b and runs p
// on them. A nil opts means all
// defaults. It returns an error naming the field when an option is
// invalid.
func NewEndpoint(b Backend, p Processor, opts *EndpointOptions) (*Endpoint, error) {
	if p == nil {
		return nil, errors.New("asyncreq: NewEndpoint: nil Processor")
	}
	var o EndpointOptions
	if opts != nil {
		o = *opts
	}
	if v, ok := p.(submitValidator); ok && o.Handler.Validate == nil {
		o.Handler.Validate = v.validateSubmit
	}
	h, err := NewHandler(b, &o.Handler)
	if err != nil {
		return nil, err
	}
	w, err := NewWorker(b, p, &o.Worker)
	if err != nil {
		return nil, err
	}
	return &Endpoint{handler: h, worker: w}, nil
}

// ServeHTTP implements http.Handler: it serves the HTTP contract (see
// Handler).
func (e *Endpoint) ServeHTTP(w http.ResponseWriter, r *http.Request) { e.handler.ServeHTTP(w, r) }

// Submit starts a request from Go, as a POST would (see Handler.Submit).
func (e *Endpoint) Submit(ctx context.Context, s Submission) (Submitted, error) {
	return e.handler.Submit(ctx, s)
}

// Start starts the Worker (see Worker.Start).
func (e *Endpoint) Start(ctx context.Context) error { return e.worker.Start(ctx) }

// Stop stops the Worker, letting running requests finish until ctx ends
// (see Worker.Stop). The HTTP side keeps accepting requests, which wait in
// the Queue; shut the http.Server down first.
func (e *Endpoint) Stop(ctx context.Context) error { return e.worker.Stop(ctx) }

// Handler returns the Endpoint's Handler.
func (e *Endpoint) Handler() *Handler { return e.handler }

// Worker returns the Endpoint's Worker.
func (e *Endpoint) Worker() *Worker { return e.worker }
