package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"sync"

	"github.com/asyncreq/asyncreq"
)

// jobsProcessor is the Processor behind /jobs that -processor names: the
// text report, or noop for load tests, which measure what asyncreq itself
// costs.
func jobsProcessor(cfg config) (asyncreq.Processor, error) {
	var p asyncreq.Processor
	switch cfg.processor {
	case "report":
		p = reportProcessor(cfg.workTime)
	case "noop":
		p = asyncreq.ProcessorFunc(func(context.Context, *asyncreq.Request) (*asyncreq.Result, error) {
			return &asyncreq.Result{ContentType: "text/plain", Body: []byte("ok")}, nil
		})
	default:
		return nil, fmt.Errorf("unknown -processor %q (want report or noop)", cfg.processor)
	}
	if cfg.failWord != "" {
		p = failingOnce(cfg.failWord, p)
	}
	return p, nil
}

// failingOnce makes next fail for good the first time it runs a request
// whose body contains word, and run it as usual the next time: after an
// operator's retry, say. It remembers the requests it failed, in this
// process only, until they run again.
func failingOnce(word string, next asyncreq.Processor) asyncreq.Processor {
	var failed sync.Map // request ids
	return asyncreq.ProcessorFunc(func(ctx context.Context, req *asyncreq.Request) (*asyncreq.Result, error) {
		if bytes.Contains(req.Body, []byte(word)) {
			if _, again := failed.LoadAndDelete(req.ID); !again {
				failed.Store(req.ID, struct{}{})
				return nil, asyncreq.Permanent(fmt.Errorf("the body contains %q, so this run fails; a retry succeeds", word), http.StatusUnprocessableEntity)
			}
		}
		return next.Process(ctx, req)
	})
}
