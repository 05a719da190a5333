package main

import (
	"math"
	"time"
)

// panel is one panel of examples/grafana-dashboard.json: its title, the
// unit of its values and its queries, evaluated over a scrape file.
type panel struct {
	title string
	unit  string
	eval  func(d *db, w time.Duration) []curve
}

// quantiles is the p50, p95 and p99 of a histogram, as the dashboard's
// latency panels draw them.
func quantiles(name string) func(d *db, w time.Duration) []curve {
	return func(d *db, w time.Duration) []curve {
		return []curve{d.quantile(0.5, name, w, nil), d.quantile(0.95, name, w, nil), d.quantile(0.99, name, w, nil)}
	}
}

// panels are the dashboard's panels, in its order, with its queries (the
// $queue variable at All: every queue).
var panels = []panel{
	{"Accepted requests /s", "requests/s", func(d *db, w time.Duration) []curve {
		return d.rate("asyncreq_requests_accepted_total", []string{"asyncreq_queue"}, w, nil)
	}},
	{"Rejected submits /s", "requests/s", func(d *db, w time.Duration) []curve {
		return d.rate("asyncreq_requests_rejected_total", []string{"http_response_status_code", "asyncreq_reason"}, w, nil)
	}},
	{"Attempts /s by outcome", "attempts/s", func(d *db, w time.Duration) []curve {
		return d.rate("asyncreq_attempts_total", []string{"asyncreq_outcome"}, w, nil)
	}},
	{"Attempt duration", "seconds", quantiles("asyncreq_attempt_duration_seconds")},
	{"Queue wait (accept to first claim)", "seconds", quantiles("asyncreq_queue_wait_seconds")},
	{"Request duration (accept to final)", "seconds", quantiles("asyncreq_request_duration_seconds")},
	{"Queue depth", "requests", func(d *db, _ time.Duration) []curve {
		return d.gauge("asyncreq_queue_depth", []string{"asyncreq_queue"}, nil, sum)
	}},
	{"Oldest waiting request", "seconds", func(d *db, _ time.Duration) []curve {
		return d.gauge("asyncreq_queue_oldest_age_seconds", []string{"asyncreq_queue"}, nil, math.Max)
	}},
}
