// Package tracelink checks, in its test, that a request's worker spans
// link to the span that submitted it when the request is kept in a real
// PostgreSQL database: the trace context travels in the record's kept
// headers, through the backend's storage. The otel module runs the same
// check on SQLite; this one lives in the examples module, which requires
// every backend, so that the otel module requires no backend driver.
package tracelink
