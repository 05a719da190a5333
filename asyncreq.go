package asyncreq

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// Progress is what a processor reported about a running request. It appears
// on the status document while the request runs.
type Progress struct {
	// Percent is the completion in percent, 0 to 100.
	Percent int `json:"percent"`
	// Message is a short human-readable description of the current step.
	Message string `json:"message,omitempty"`
}

// Request is what a Processor receives: the recorded HTTP request, and
// where it stands.
//
// A processor must not modify Body or Header; they may be shared with the
// Store's copy.
type Request struct {
	// ID is the request's identifier.
	ID string
	// Method is the HTTP method the request was submitted with (usually POST).
	Method string
	// URL is the path and query the request was submitted to, as received.
	URL string
	// Header holds the request headers the handler was configured to keep.
	Header http.Header
	// ContentType is the submitted Content-Type.
	ContentType string
	// Body is the submitted body, exactly as sent.
	Body []byte
	// Owner is the owner the handler's Owner function assigned, or "".
	Owner string
	// Attempt is the 1-based number of this attempt.
	Attempt int
	// CreatedAt is when the request was accepted.
	CreatedAt time.Time
}

// Result is the outcome of a successful request: what the result URL
// serves.
type Result struct {
	// StatusCode is the HTTP status code the result is served with.
	// Zero means 200 OK.
	StatusCode int `json:"status_code,omitempty"`
	// ContentType is the Content-Type of Body.
	ContentType string `json:"content_type,omitempty"`
	// Header holds further response headers to serve with the result.
	// Hop-by-hop headers, headers the handler sets itself (Content-Length,
	// ETag, Date) and, unless HandlerOptions.ReplaySetCookie is set,
	// Set-Cookie are not replayed. The result of a record with an Owner is
	// served with Cache-Control private, whatever Header says: public and
	// s-maxage are dropped from it.
	Header http.Header `json:"header,omitempty"`
	// Body is the result's bytes.
	Body []byte `json:"body,omitempty"`
}

// Processor runs accepted requests. It looks like http.Handler: one method,
// and ProcessorFunc adapts an ordinary function.
//
// Process is called by a Worker, possibly on many goroutines at once. What
// it returns decides what happens next:
//
//   - a non-nil *Result and a nil error: the request succeeded, and the
//     result is stored and served at the result URL;
//   - an error made with Permanent (also when wrapped), or a *Problem
//     returned as it is: the request failed for good; it is not retried and
//     the status document shows the problem;
//   - an error made with RetryAfter: the attempt failed; the request is
//     retried after the given delay while attempts remain;
//   - any other error, or a panic: the attempt failed; the request is retried
//     with exponential backoff and jitter while attempts remain, and fails
//     with 500 after the last one. This includes a *Problem wrapped in
//     another error: that is another service's answer (a client's
//     ResponseError, say), and neither its verdict nor its detail is meant
//     for this request's client;
//   - ctx.Err() after ctx ends: the worker decides by the cancellation
//     cause (context.Cause): a client's cancel records the request as
//     canceled, a worker shutdown hands it back without spending an attempt,
//     and a timeout counts as a failed attempt.
//
// A Result larger than the Worker's MaxResultBytes fails the request for
// good instead of being stored.
//
// Because a worker can crash after the work is done but before the outcome
// is recorded, a request can be processed more than once; its outcome is
// recorded exactly once. Processors with side effects should be idempotent
// on Request.ID.
//
// The *Result returned, with its Header and Body, passes to the Worker: the
// processor must not change it afterwards.
type Processor interface {
	Process(ctx context.Context, req *Request) (*Result, error)
}

// ProcessorFunc adapts an ordinary function to a Processor.
type ProcessorFunc func(ctx context.Context, req *Request) (*Result, error)

// Process calls f(ctx, req).
func (f ProcessorFunc) Process(ctx context.Context, req *Request) (*Result, error) {
	return f(ctx, req)
}

// Sentinel errors. Backends map their native errors onto these, and callers
// test for them with errors.Is.
var (
	// ErrNotFound means no record (or queue entry) with that id exists.
	ErrNotFound = errors.New("asyncreq: not found")
	// ErrGone means the record existed but was purged or deleted; its
	// tombstone still lasts. Stores return it as a *GoneError, which
	// carries the record's owner.
	ErrGone = errors.New("asyncreq: gone")
	// ErrDuplicate is returned by Store.Create and Accepter.Accept when a
	// record with the same owner and idempotency key already exists.
	ErrDuplicate = errors.New("asyncreq: duplicate idempotency key")
	// ErrLeaseLost means a lease or lease token is no longer valid: it
	// expired and the request was redelivered, or it was already settled.
	ErrLeaseLost = errors.New("asyncreq: lease lost")
	// ErrFinished means the request is already in a final state.
	ErrFinished = errors.New("asyncreq: request already finished")
	// ErrCanceled is the cancellation cause of a processor's context when the
	// client canceled the request.
	ErrCanceled = errors.New("asyncreq: request canceled")
	// ErrShutdown is the cancellation cause of a processor's context when
	// the worker is stopping; the request is handed back and runs again
	// later without spending an attempt.
	ErrShutdown = errors.New("asyncreq: worker shutting down")
	// ErrTimeout is the cancellation cause of a processor's context when the
	// worker's per-request timeout passed.
	ErrTimeout = errors.New("asyncreq: processing timed out")
	// ErrClosed means the Store or Queue was closed.
	ErrClosed = errors.New("asyncreq: closed")
	// ErrResultTooLarge means a result is larger than the Worker's
	// MaxResultBytes. HandlerProcessor's writer fails the Write that passes
	// the limit with it, and the failure it returns wraps it.
	ErrResultTooLarge = errors.New("asyncreq: result too large")
)

// GoneError is what a Store returns for a record that was purged or
// deleted while its tombstone lasts: errors.Is(err, ErrGone) holds, and
// Owner is the Owner the record had, kept with the tombstone. A Handler
// with an Owner function answers 410 Gone only to that owner; to any
// other, and when a Store returns ErrGone without a *GoneError, it answers
// 404, as for an id never used, so that nobody learns another owner's
// record existed.
type GoneError struct {
	// Owner is the Owner of the record the tombstone stands for.
	Owner string
}

// Error implements error.
func (e *GoneError) Error() string { return ErrGone.Error() }

// Unwrap returns ErrGone.
func (e *GoneError) Unwrap() error { return ErrGone }

// PermanentError is a failure that must not be retried. Status is the HTTP
// status the failed request's problem document shows (and the result URL
// answers with); zero means 500.
type PermanentError struct {
	// Err is the failure; its text is the problem's detail.
	Err error
	// Status is the HTTP status of the problem; zero means 500.
	Status int
}

// Error implements error.
func (e *PermanentError) Error() string {
	if e.Err == nil {
		return "asyncreq: permanent failure"
	}
	return e.Err.Error()
}

// Unwrap returns the underlying error.
func (e *PermanentError) Unwrap() error { return e.Err }

// Permanent marks err as a permanent failure shown with the given HTTP status
// (for example 422 for input that can never be processed; 0 means 500).
// The message of err becomes the problem's detail, so it must be fit for the
// client to read. When err is itself a *Problem, that problem is shown, with
// status as its Status if it names none; a *Problem deeper in err's chain
// only contributes its text. Permanent(nil, status) returns nil.
func Permanent(err error, status int) error {
	if err == nil {
		return nil
	}
	return &PermanentError{Err: err, Status: status}
}

// RetryAfterError asks for another attempt after Delay.
type RetryAfterError struct {
	// Err is the failure of the attempt.
	Err error
	// Delay is the wait before the next attempt.
	Delay time.Duration
}

// Error implements error.
func (e *RetryAfterError) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("asyncreq: retry after %s", e.Delay)
	}
	return e.Err.Error()
}

// Unwrap returns the underlying error.
func (e *RetryAfterError) Unwrap() error { return e.Err }

// RetryAfter marks err as a failed attempt to be retried after delay (while
// attempts remain). RetryAfter(nil, d) returns nil.
func RetryAfter(err error, delay time.Duration) error {
	if err == nil {
		return nil
	}
	return &RetryAfterError{Err: err, Delay: delay}
}

// progressKey is the context key under which a Worker installs the function
// that records progress.
type progressKey struct{}

// ProgressFunc records progress for the request being processed.
type ProgressFunc func(ctx context.Context, p Progress) error

// WithProgress returns a context carrying f as the progress reporter for
// ReportProgress. Workers call it; tests of processors may too.
func WithProgress(ctx context.Context, f ProgressFunc) context.Context {
	return context.WithValue(ctx, progressKey{}, f)
}

// ReportProgress records the progress of the request being processed under
// ctx, so that it shows on the status document. percent is clamped to
// 0..100. Outside a Worker it does nothing and returns nil.
// It returns ErrLeaseLost when this attempt no longer owns the request.
func ReportProgress(ctx context.Context, percent int, message string) error {
	f, _ := ctx.Value(progressKey{}).(ProgressFunc)
	if f == nil {
		return nil
	}
	percent = min(max(percent, 0), 100)
	return f(ctx, Progress{Percent: percent, Message: message})
}

// idAlphabet is Crockford's base32 alphabet: URL-safe, no ambiguous letters.
const idAlphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

// IDLen is the length of an id made by NewID.
const IDLen = 30

// legacyIDLen is the length of the ids NewID made before they carried a
// time: 128 random bits in 26 characters. They stay valid.
const legacyIDLen = 26

// idTimeLen is the length of an id's time prefix: 48 bits of Unix
// milliseconds in 10 characters (the top two bits zero), as in a ULID.
const idTimeLen = 10

// NewID returns a new request id of IDLen characters of Crockford base32:
// the time in Unix milliseconds (48 bits, 10 characters), then 100 bits
// from crypto/rand (20 characters). Ids made later sort after those made
// earlier (within one millisecond, at random), so a Store can list records
// in creation order by id; the random part keeps an id unguessable, as
// the only secret of a request without an owner.
//
// Ids NewID made before it carried a time (26 random characters) are still
// valid: see ValidID.
func NewID() string {
	return newIDAt(time.Now())
}

// newIDAt is NewID at the time t.
func newIDAt(t time.Time) string {
	var out [IDLen]byte
	ms := uint64(max(t.UnixMilli(), 0)) & (1<<48 - 1)
	for i := idTimeLen - 1; i >= 0; i-- {
		out[i] = idAlphabet[ms&31]
		ms >>= 5
	}
	var b [((IDLen-idTimeLen)*5 + 7) / 8]byte // 100 bits in 13 bytes
	_, _ = rand.Read(b[:])                    // crypto/rand.Read never fails (Go 1.24+)
	// Emit 5 bits at a time from the front of b.
	var acc uint64
	bits := 0
	j := 0
	for i := idTimeLen; i < IDLen; i++ {
		if bits < 5 {
			acc = acc<<8 | uint64(b[j])
			j++
			bits += 8
		}
		bits -= 5
		out[i] = idAlphabet[(acc>>bits)&31]
	}
	return string(out[:])
}

// IDTime returns the time an id made by NewID carries, to the millisecond,
// and false for an id without one (one made before ids carried a time, or
// a malformed one).
func IDTime(id string) (time.Time, bool) {
	if len(id) != IDLen || !ValidID(id) {
		return time.Time{}, false
	}
	var ms int64
	for i := 0; i < idTimeLen; i++ {
		ms = ms<<5 | int64(strings.IndexByte(idAlphabet, id[i]))
	}
	return time.UnixMilli(ms), true
}

// ValidID reports whether id has the form NewID makes, or the form of the
// 26-character random ids it made before. Handlers answer 404 for a
// malformed id without asking the Store.
func ValidID(id string) bool {
	if len(id) != IDLen && len(id) != legacyIDLen || id[0] > '7' {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('0' <= c && c <= '9' || 'A' <= c && c <= 'Z' && c != 'I' && c != 'L' && c != 'O' && c != 'U') {
			return false
		}
	}
	return true
}

// newToken returns a random lease token.
func newToken() string { return NewID() }
