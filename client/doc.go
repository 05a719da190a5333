// Package client is the Go client of the asynchronous request-reply pattern:
// submit a request, poll its status the right way, follow the 303 to the
// result, wait, cancel, resume in another process, and track many requests
// in the background.
//
// Go's http.Client gets the pattern wrong by itself: it follows a 303
// silently, ignores Retry-After, gives up after ten redirects and drops
// credentials on cross-origin redirects. This package follows no redirect
// automatically; it reads each answer itself.
//
// # Submitting
//
// [Client.Submit] sends a request (any method, body and headers) to an
// asynchronous endpoint and returns an [Operation]. The server may answer
//
//   - 202 Accepted with a Location: the status URL to poll;
//   - 200 (or another 2xx) at once: the request finished inline, and that
//     answer is the result;
//   - 303 See Other: the request finished, and the result is at Location;
//     or, when Location is the status URL (asyncreq's answer to Prefer:
//     wait for a request that failed, was canceled or whose result is an
//     error answer), the status document, sent along or polled, tells the
//     outcome, and a failure is an [*OperationError], not a failed submit.
//
// A submit is retried (on network errors and on 429, 502, 503 and 504, and
// 409 while the first copy is still being accepted) only when it carries an
// Idempotency-Key, set with [SubmitOptions.IdempotencyKey] or generated with
// [SubmitOptions.GenerateIdempotencyKey]. Without a key a submit is never
// repeated, since the server might have accepted it.
//
// # Polling and waiting
//
// [Operation.Poll] asks the status URL once. [Operation.Wait] polls until
// the request is finished and returns its result, a [Response]. Between
// polls it honours Retry-After in both forms (seconds and HTTP-date), held
// between [Options.PollMin] and [Options.PollMax] and with jitter added;
// without Retry-After it backs off exponentially. With [Options.LongPoll] it sends
// Prefer: wait=N so that a server that supports long polls holds the
// answer until something changes.
//
// The status URL may answer in any of these dialects:
//
//   - 200 with a status document (pending or running): not finished;
//   - 202, with a Location (Durable Functions, Azure's Location poller):
//     not finished, poll that Location next;
//   - 303 See Other: finished; the result is at Location;
//   - 200 with a status document that says failed or canceled: the request
//     failed, and Wait returns an [*OperationError] with its problem;
//   - 200 with anything else, or 201/204: finished, and that answer is the
//     result.
//
// A failed or canceled request returns an [*OperationError], which carries
// the problem document (errors.As with *asyncreq.Problem works too). A
// status or result URL that answers 404 or 410 returns a [*ResponseError]
// that wraps asyncreq.ErrNotFound or asyncreq.ErrGone.
//
// # Credentials
//
// Headers that the caller sets (in [Options.Header] and
// [SubmitOptions.Header]) are sent on status, result and cancel requests to
// the origin the request was submitted to, and to the origins listed in
// [Options.TrustedOrigins]; never to any other origin.
//
// # Resuming
//
// [Operation.ResumeToken] turns an operation into an opaque string, and
// [Client.Resume] turns it back, in the same process or another one. Tokens
// carry no headers: the resuming Client sends its own [Options.Header].
// With [Options.TokenKey] set, tokens are signed and Resume rejects tokens
// that were not made with the same key.
//
// # Tracking
//
// A [Tracker] keeps the resume token of every pending operation in a
// [TrackerStore] ([NewMemoryTrackerStore], or the durable
// [OpenFileTrackerStore]), polls them in the background with bounded
// concurrency, and delivers each outcome once, to a callback or a channel. After a restart it picks up the
// operations its store still holds.
//
// # Webhooks
//
// A server that enables completion callbacks tells a URL named in the
// Callback-URL header of a submit when the request finishes, with a
// webhook signed per the Standard Webhooks specification.
// [WebhookHandler] receives them and [VerifyWebhook] verifies one by
// hand: the timestamp within [DefaultWebhookTolerance], the signature
// compared in constant time, any of several signatures (a rotated secret)
// accepted. Polling stays the fallback: a webhook may come late or not at
// all, and comes at least once.
package client
