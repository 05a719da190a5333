package asyncreq

import (
	"context"
	"errors"
	"time"
)

// This file is how the Worker delivers a completion callback once the
// request is final, holding the request's queue entry until the callback
// is settled (see webhook.go for why that makes the delivery durable).

// errNoWebhooks is why a Worker without WorkerOptions.Webhooks gives a
// callback up.
const errNoWebhooks = "the worker has no webhook configuration"

// settleFinished settles the lease of a request found final at its claim:
// it delivers the callback when one is due, and acks the lease otherwise.
func (w *Worker) settleFinished(ctx context.Context, j *job) {
	rec, err := checkRecord(w.store.Get(ctx, j.lease.ID))
	switch {
	case err == nil && rec.callbackDue():
		w.deliver(ctx, j, rec)
	case err == nil, isMissing(err):
		w.ack(ctx, j)
	default:
		// The callback may be due: leave the lease to run out, and read
		// the record again at the next delivery.
		j.logger().Error("asyncreq: read a finished record", "err", err)
	}
}

// deliver makes one delivery attempt of rec's callback, records how it
// went, and settles j's lease: acked once the callback is delivered or
// given up, nacked with a backoff for the next attempt otherwise.
func (w *Worker) deliver(ctx context.Context, j *job, rec *Record) {
	log := j.logger().With("callback_attempt", rec.Callback.Attempts+1)
	var sendErr error
	if w.hooks == nil {
		sendErr = errors.New(errNoWebhooks)
	} else {
		// The lease, kept by j's leaseKeeper, outlasts the attempt: the
		// request is not delivered to another worker meanwhile and sent
		// twice.
		sendErr = w.hooks.send(ctx, rec, time.Now())
	}
	now := time.Now()
	var fn func(*Record) error
	var delay time.Duration
	switch {
	case sendErr == nil:
		log.Info("asyncreq: callback delivered")
		fn = func(r *Record) error { return r.CallbackDelivered(now) }
	case w.hooks == nil || errors.Is(sendErr, errWebhookRefused) || rec.Callback.Attempts+1 >= w.hooks.opts.MaxAttempts:
		log.Error("asyncreq: callback given up", "err", sendErr)
		reason := sendErr.Error()
		fn = func(r *Record) error { return r.CallbackFail(reason, now) }
	default:
		delay = w.hooks.backoff(rec.Callback.Attempts + 1)
		log.Warn("asyncreq: callback failed; retrying", "err", sendErr, "retry_in", delay)
		reason := sendErr.Error()
		fn = func(r *Record) error { return r.CallbackRetry(reason, now) }
	}
	stored, err := checkRecord(w.store.Update(ctx, j.lease.ID, fn))
	switch {
	case err == nil:
	case errors.Is(err, errCallbackSettled), isMissing(err):
		// Another delivery settled it, or the record is gone.
		w.release(ctx, j)
		return
	default:
		// Left to run out, the lease brings the request back, and the
		// callback is tried again.
		log.Error("asyncreq: record callback delivery", "err", err)
		return
	}
	if stored.callbackDue() {
		w.nack(ctx, j, delay)
		return
	}
	w.ack(ctx, j)
}
