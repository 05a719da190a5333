package main

import (
	"context"
	"fmt"

	"github.com/asyncreq/asyncreq"
)

// jobsProcessor is the Processor behind /jobs that -processor names: the
// text report, or noop for load tests, which measure what asyncreq itself
// costs.
func jobsProcessor(cfg config) (asyncreq.Processor, error) {
	switch cfg.processor {
	case "report":
		return reportProcessor(cfg.workTime), nil
	case "noop":
		return asyncreq.ProcessorFunc(func(context.Context, *asyncreq.Request) (*asyncreq.Result, error) {
			return &asyncreq.Result{ContentType: "text/plain", Body: []byte("ok")}, nil
		}), nil
	}
	return nil, fmt.Errorf("unknown -processor %q (want report or noop)", cfg.processor)
}
