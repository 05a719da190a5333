package admin

import (
	"context"
	"encoding/base64"
	"net/http"
	"time"
	"unicode/utf8"

	"github.com/asyncreq/asyncreq"
)

// This file is what the API answers and the pages show, built from the
// operator API's results: a queue's figures, a request's summary and its
// detail.

// Queue is how a queue stands: an element of GET {base}/api/queues.
type Queue struct {
	// Name is the queue's name in Options.Queues.
	Name string `json:"name"`
	// Counts counts its records by state; nil when its Store is no
	// asyncreq.Lister, or counting failed.
	Counts *Counts `json:"counts,omitempty"`
	// Stats is its Queue's snapshot; nil when its Queue is no
	// asyncreq.QueueStater, or the snapshot failed.
	Stats *Stats `json:"stats,omitempty"`
	// Throughput is how many requests per second reached a final state
	// between the last two samples, from the change of the final counts
	// (a purge between them makes it read low); nil with fewer than two
	// samples.
	Throughput *float64 `json:"throughput_per_second,omitempty"`
	// Capabilities says which operations its backend supports.
	Capabilities Capabilities `json:"capabilities"`
	// Errors says what could not be read, when something could not.
	Errors []string `json:"errors,omitempty"`
}

// Counts counts a queue's records by state.
type Counts struct {
	Pending   int64 `json:"pending"`
	Running   int64 `json:"running"`
	Succeeded int64 `json:"succeeded"`
	Failed    int64 `json:"failed"`
	Canceled  int64 `json:"canceled"`
	Total     int64 `json:"total"`
}

func countsOf(c asyncreq.StateCounts) *Counts {
	return &Counts{Pending: c.Pending, Running: c.Running, Succeeded: c.Succeeded,
		Failed: c.Failed, Canceled: c.Canceled, Total: c.Total()}
}

// Of returns the count of state s.
func (c *Counts) Of(s asyncreq.State) int64 {
	switch s {
	case asyncreq.StatePending:
		return c.Pending
	case asyncreq.StateRunning:
		return c.Running
	case asyncreq.StateSucceeded:
		return c.Succeeded
	case asyncreq.StateFailed:
		return c.Failed
	case asyncreq.StateCanceled:
		return c.Canceled
	}
	return 0
}

// Stats is a queue's asyncreq.QueueStats: a count the backend cannot tell
// is left out.
type Stats struct {
	At time.Time `json:"at"`
	// Depth counts the entries waiting in the queue: Pending plus
	// Delayed (when the backend counts it).
	Depth   int64  `json:"depth"`
	Pending int64  `json:"pending"`
	Delayed *int64 `json:"delayed,omitempty"`
	Running *int64 `json:"running,omitempty"`
	// OldestPendingAge is how long, in seconds, the oldest pending entry
	// has been due: how far behind the workers are.
	OldestPendingAge float64 `json:"oldest_pending_age_seconds"`
}

func statsOf(s asyncreq.QueueStats) *Stats {
	counted := func(n int64) *int64 {
		if n == asyncreq.Uncounted {
			return nil
		}
		return &n
	}
	st := &Stats{At: s.At.UTC(), Depth: s.Pending, Pending: s.Pending, Delayed: counted(s.Delayed), Running: counted(s.Running),
		OldestPendingAge: s.OldestPendingAge().Seconds()}
	if st.Delayed != nil {
		st.Depth += *st.Delayed
	}
	return st
}

// Capabilities says which of the optional operator capabilities a queue's
// backend has. Listing and counting need List; purging needs Purge; the
// depth and oldest pending age need QueueStats. Get, retry, cancel and
// delete work on every backend.
type Capabilities struct {
	List       bool `json:"list"`
	Purge      bool `json:"purge"`
	QueueStats bool `json:"queue_stats"`
}

// queueView reads how q stands. Each read is bounded by ctx; one that
// fails is logged and named in Errors.
func (h *Handler) queueView(ctx context.Context, q *queue) Queue {
	v := Queue{Name: q.name, Capabilities: Capabilities{List: q.lister != nil, Purge: q.purger != nil, QueueStats: q.stater != nil}}
	if q.lister != nil {
		c, err := q.lister.CountStates(ctx)
		if err != nil {
			h.logRead(ctx, q, "counting", err)
			v.Errors = append(v.Errors, "counting the records failed")
		} else {
			v.Counts = countsOf(c)
		}
	}
	if q.stater != nil {
		s, err := q.stater.QueueStats(ctx)
		if err != nil {
			h.logRead(ctx, q, "queue statistics", err)
			v.Errors = append(v.Errors, "reading the queue statistics failed")
		} else {
			v.Stats = statsOf(s)
		}
	}
	v.Throughput = q.samples.throughput()
	return v
}

// Summary is a request as a listing shows it.
type Summary struct {
	ID          string             `json:"id"`
	Queue       string             `json:"queue"`
	State       asyncreq.State     `json:"state"`
	Owner       string             `json:"owner,omitempty"`
	Method      string             `json:"method,omitempty"`
	URL         string             `json:"url,omitempty"`
	ContentType string             `json:"content_type,omitempty"`
	Attempts    int                `json:"attempts"`
	CreatedAt   time.Time          `json:"created_at"`
	UpdatedAt   time.Time          `json:"updated_at"`
	Progress    *asyncreq.Progress `json:"progress,omitempty"`
	// Error is the failure of a failed or canceled request, or the last
	// attempt's failure of one waiting to be retried.
	Error *asyncreq.Problem `json:"error,omitempty"`
	// CallbackState is where the completion callback's delivery stands
	// ("waiting", "pending", "retrying", "delivered", "failed"), or ""
	// when the submit asked for none.
	CallbackState string `json:"callback_state,omitempty"`
}

func summaryOf(q *queue, r *asyncreq.Record) Summary {
	s := Summary{
		ID: r.ID, Queue: q.name, State: r.State, Owner: r.Owner, Method: r.Method, URL: r.URL,
		ContentType: r.ContentType, Attempts: r.Attempts, CreatedAt: r.CreatedAt.UTC(), UpdatedAt: r.UpdatedAt.UTC(),
		Progress: r.Progress, Error: r.Error,
	}
	if r.Callback != nil {
		s.CallbackState = string(r.Callback.State)
		if s.CallbackState == "" {
			s.CallbackState = "waiting"
		}
	}
	return s
}

// Detail is everything the record of a request says, for an operator:
// GET {base}/api/requests/{id}.
type Detail struct {
	Summary
	IdempotencyKey  string `json:"idempotency_key,omitempty"`
	Enqueued        bool   `json:"enqueued"`
	CancelRequested bool   `json:"cancel_requested,omitempty"`
	// Header holds the request headers the Handler kept.
	Header http.Header `json:"header,omitempty"`
	// Body is the start of the submitted body.
	Body *Preview `json:"body,omitempty"`
	// Result is the outcome of a succeeded request.
	Result *ResultView `json:"result,omitempty"`
	// ExpiresAt is when a final request may be purged.
	ExpiresAt time.Time `json:"expires_at,omitzero"`
	// Retention is how long, in seconds, the record is kept once final.
	Retention float64 `json:"retention_seconds,omitempty"`
	// Timings are the durations the record's times tell.
	Timings Timings `json:"timings"`
	// Callback is the completion callback and how its delivery went,
	// with the last attempt's error.
	Callback *asyncreq.Callback `json:"callback,omitempty"`
}

// Timings are the durations, in seconds, that a record's times tell. A
// record keeps when it was created and last changed, not each attempt's
// start, so these are all there is.
type Timings struct {
	// Age is how long ago the request was accepted.
	Age float64 `json:"age_seconds"`
	// SinceUpdate is how long ago the record last changed.
	SinceUpdate float64 `json:"since_update_seconds"`
	// Finished is how long the request took from its submit to its
	// outcome; 0 while it is not final.
	Finished float64 `json:"finished_after_seconds,omitempty"`
}

// ResultView is the outcome of a succeeded request.
type ResultView struct {
	StatusCode  int         `json:"status_code"`
	ContentType string      `json:"content_type,omitempty"`
	Header      http.Header `json:"header,omitempty"`
	Body        *Preview    `json:"body"`
}

// Preview is the start of a body: as text when it is UTF-8, else in
// base64.
type Preview struct {
	// Bytes is the body's whole length.
	Bytes int `json:"bytes"`
	// Text is the start of a UTF-8 body, or "".
	Text string `json:"text,omitempty"`
	// Base64 is the start of any other body, or "".
	Base64 string `json:"base64,omitempty"`
	// Truncated reports whether the body is longer than what is shown.
	Truncated bool `json:"truncated,omitempty"`
}

// previewOf returns the start of b, at most limit bytes, or nil for an
// empty b.
func previewOf(b []byte, limit int) *Preview {
	if len(b) == 0 {
		return nil
	}
	p := &Preview{Bytes: len(b)}
	head := b
	if len(head) > limit {
		head, p.Truncated = head[:limit], true
		// A rune the cut split does not make the text invalid: show the
		// text up to it.
		for n := 1; n < utf8.UTFMax && n <= len(head) && !utf8.Valid(head); n++ {
			if cut := head[:len(head)-n]; utf8.Valid(cut) && !utf8.FullRune(head[len(cut):]) {
				head = cut
			}
		}
	}
	if utf8.Valid(head) {
		p.Text = string(head)
	} else {
		p.Base64 = base64.StdEncoding.EncodeToString(b[:min(len(b), limit)])
	}
	return p
}

func (h *Handler) detailOf(q *queue, r *asyncreq.Record, now time.Time) Detail {
	d := Detail{
		Summary:         summaryOf(q, r),
		IdempotencyKey:  r.IdempotencyKey,
		Enqueued:        r.Enqueued,
		CancelRequested: r.CancelRequested,
		Header:          r.Header,
		Body:            previewOf(r.Body, h.opts.PreviewBytes),
		Retention:       r.Retention.Seconds(),
		Callback:        r.Callback,
		Timings: Timings{
			Age:         max(now.Sub(r.CreatedAt), 0).Seconds(),
			SinceUpdate: max(now.Sub(r.UpdatedAt), 0).Seconds(),
		},
	}
	if !r.ExpiresAt.IsZero() {
		d.ExpiresAt = r.ExpiresAt.UTC()
	}
	if r.State.Final() {
		d.Timings.Finished = max(r.UpdatedAt.Sub(r.CreatedAt), 0).Seconds()
	}
	if r.Result != nil {
		code := r.Result.StatusCode
		if code == 0 {
			code = http.StatusOK
		}
		d.Result = &ResultView{StatusCode: code, ContentType: r.Result.ContentType, Header: r.Result.Header,
			Body: previewOf(r.Result.Body, h.opts.PreviewBytes)}
		if d.Result.Body == nil {
			d.Result.Body = &Preview{}
		}
	}
	return d
}
