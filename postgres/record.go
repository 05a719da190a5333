package postgres

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"time"

	"github.com/asyncreq/asyncreq"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
)

// recordColumns are the columns of a record row, in the order scanRecord
// reads them and recordValues writes them (after the queue column).
const recordColumns = `id, owner, idempotency_key, body_hash, state, enqueued, method, url, header,
	content_type, body, attempts, lease_token, cancel_requested, progress, result, result_body, error,
	created_at, updated_at, retention_ns, tombstone_ttl_ns, expires_at, callback`

// resultMeta is what the result column holds: the Result without its body,
// which has a bytea column of its own.
type resultMeta struct {
	StatusCode  int         `json:"status_code,omitempty"`
	ContentType string      `json:"content_type,omitempty"`
	Header      http.Header `json:"header,omitempty"`
}

// row is a record in the shape of its table row. JSON columns hold nil for
// NULL.
type row struct {
	id, owner, key, bodyHash, state string
	enqueued                        bool
	method, url                     string
	header                          []byte
	contentType                     string
	body                            []byte
	attempts                        int32
	leaseToken                      string
	cancel                          bool
	progress, result                []byte
	resultBody                      []byte
	errJSON                         []byte
	created, updated                time.Time
	retention, tombstoneTTL         int64
	expires                         pgtype.Timestamptz
	callback                        []byte
}

// marshalNullable encodes v as JSON, or returns nil when isNil.
func marshalNullable(v any, isNil bool) ([]byte, error) {
	if isNil {
		return nil, nil
	}
	return json.Marshal(v)
}

// toRow converts rec into its row form.
func toRow(rec *asyncreq.Record) (row, error) {
	r := row{
		id:           rec.ID,
		owner:        rec.Owner,
		key:          rec.IdempotencyKey,
		bodyHash:     rec.BodyHash,
		state:        string(rec.State),
		enqueued:     rec.Enqueued,
		method:       rec.Method,
		url:          rec.URL,
		contentType:  rec.ContentType,
		body:         rec.Body,
		attempts:     int32(rec.Attempts),
		leaseToken:   rec.LeaseToken,
		cancel:       rec.CancelRequested,
		created:      rec.CreatedAt,
		updated:      rec.UpdatedAt,
		retention:    int64(rec.Retention),
		tombstoneTTL: int64(rec.TombstoneTTL),
	}
	if rec.Attempts < 0 || int64(rec.Attempts) > 1<<31-1 {
		return r, fmt.Errorf("postgres: record %s: attempts %d out of range", rec.ID, rec.Attempts)
	}
	if !rec.ExpiresAt.IsZero() {
		r.expires = pgtype.Timestamptz{Time: rec.ExpiresAt, Valid: true}
	}
	var err error
	if r.header, err = marshalNullable(rec.Header, rec.Header == nil); err != nil {
		return r, fmt.Errorf("postgres: record %s: header: %w", rec.ID, err)
	}
	if r.progress, err = marshalNullable(rec.Progress, rec.Progress == nil); err != nil {
		return r, fmt.Errorf("postgres: record %s: progress: %w", rec.ID, err)
	}
	if r.errJSON, err = marshalNullable(rec.Error, rec.Error == nil); err != nil {
		return r, fmt.Errorf("postgres: record %s: error: %w", rec.ID, err)
	}
	if r.callback, err = marshalNullable(rec.Callback, rec.Callback == nil); err != nil {
		return r, fmt.Errorf("postgres: record %s: callback: %w", rec.ID, err)
	}
	if rec.Result != nil {
		r.result, err = json.Marshal(resultMeta{
			StatusCode:  rec.Result.StatusCode,
			ContentType: rec.Result.ContentType,
			Header:      rec.Result.Header,
		})
		if err != nil {
			return r, fmt.Errorf("postgres: record %s: result: %w", rec.ID, err)
		}
		r.resultBody = rec.Result.Body // nil is NULL, distinct from an empty body
	}
	return r, nil
}

// args returns the row's values in recordColumns order, preceded by queue.
func (r *row) args(queue string) []any {
	return []any{queue, r.id, r.owner, r.key, r.bodyHash, r.state, r.enqueued, r.method, r.url,
		r.header, r.contentType, r.body, r.attempts, r.leaseToken, r.cancel, r.progress, r.result,
		r.resultBody, r.errJSON, r.created, r.updated, r.retention, r.tombstoneTTL, r.expires, r.callback}
}

// scanRecord reads one row of recordColumns.
func scanRecord(sc pgx.Row) (*asyncreq.Record, error) {
	var (
		r     row
		state string
	)
	err := sc.Scan(&r.id, &r.owner, &r.key, &r.bodyHash, &state, &r.enqueued, &r.method, &r.url,
		&r.header, &r.contentType, &r.body, &r.attempts, &r.leaseToken, &r.cancel, &r.progress,
		&r.result, &r.resultBody, &r.errJSON, &r.created, &r.updated, &r.retention, &r.tombstoneTTL,
		&r.expires, &r.callback)
	if err != nil {
		return nil, err
	}
	rec := &asyncreq.Record{
		ID:              r.id,
		Owner:           r.owner,
		IdempotencyKey:  r.key,
		BodyHash:        r.bodyHash,
		State:           asyncreq.State(state),
		Enqueued:        r.enqueued,
		Method:          r.method,
		URL:             r.url,
		ContentType:     r.contentType,
		Body:            r.body,
		Attempts:        int(r.attempts),
		LeaseToken:      r.leaseToken,
		CancelRequested: r.cancel,
		CreatedAt:       r.created.UTC(),
		UpdatedAt:       r.updated.UTC(),
		Retention:       time.Duration(r.retention),
		TombstoneTTL:    time.Duration(r.tombstoneTTL),
	}
	if r.expires.Valid {
		rec.ExpiresAt = r.expires.Time.UTC()
	}
	if r.header != nil {
		if err := json.Unmarshal(r.header, &rec.Header); err != nil {
			return nil, fmt.Errorf("record %s: header: %w", r.id, err)
		}
	}
	if r.progress != nil {
		rec.Progress = new(asyncreq.Progress)
		if err := json.Unmarshal(r.progress, rec.Progress); err != nil {
			return nil, fmt.Errorf("record %s: progress: %w", r.id, err)
		}
	}
	if r.errJSON != nil {
		rec.Error = new(asyncreq.Problem)
		if err := json.Unmarshal(r.errJSON, rec.Error); err != nil {
			return nil, fmt.Errorf("record %s: error: %w", r.id, err)
		}
	}
	if r.callback != nil {
		rec.Callback = new(asyncreq.Callback)
		if err := json.Unmarshal(r.callback, rec.Callback); err != nil {
			return nil, fmt.Errorf("record %s: callback: %w", r.id, err)
		}
	}
	if r.result != nil {
		var m resultMeta
		if err := json.Unmarshal(r.result, &m); err != nil {
			return nil, fmt.Errorf("record %s: result: %w", r.id, err)
		}
		rec.Result = &asyncreq.Result{
			StatusCode:  m.StatusCode,
			ContentType: m.ContentType,
			Header:      m.Header,
			Body:        r.resultBody,
		}
	}
	return rec, nil
}

// storedCopy returns a copy of rec as reading it back would give it:
// times in UTC at the microsecond precision of timestamptz, and no empty
// result header (which the result column leaves out).
func storedCopy(rec *asyncreq.Record) *asyncreq.Record {
	c := rec.Clone()
	if c.Result != nil && len(c.Result.Header) == 0 {
		c.Result.Header = nil
	}
	c.CreatedAt = c.CreatedAt.Truncate(time.Microsecond).UTC()
	c.UpdatedAt = c.UpdatedAt.Truncate(time.Microsecond).UTC()
	if !c.ExpiresAt.IsZero() {
		c.ExpiresAt = c.ExpiresAt.Truncate(time.Microsecond).UTC()
	}
	return c
}

// rowBatch holds many rows column by column, for an INSERT ... SELECT FROM
// unnest(...) of all of them in one statement.
type rowBatch struct {
	id, owner, key, bodyHash, state []string
	enqueued                        []bool
	method, url                     []string
	header                          []string
	contentType                     []string
	body                            [][]byte
	attempts                        []int32
	leaseToken                      []string
	cancel                          []bool
	progress, result                []string
	resultBody                      [][]byte
	errJSON                         []string
	created, updated                []time.Time
	retention, tombstoneTTL         []int64
	expires                         []pgtype.Timestamptz
	callback                        []string
}

// add appends r to the batch. JSON columns travel as text, the empty
// string standing for NULL.
func (b *rowBatch) add(r *row) {
	b.id = append(b.id, r.id)
	b.owner = append(b.owner, r.owner)
	b.key = append(b.key, r.key)
	b.bodyHash = append(b.bodyHash, r.bodyHash)
	b.state = append(b.state, r.state)
	b.enqueued = append(b.enqueued, r.enqueued)
	b.method = append(b.method, r.method)
	b.url = append(b.url, r.url)
	b.header = append(b.header, string(r.header))
	b.contentType = append(b.contentType, r.contentType)
	b.body = append(b.body, r.body)
	b.attempts = append(b.attempts, r.attempts)
	b.leaseToken = append(b.leaseToken, r.leaseToken)
	b.cancel = append(b.cancel, r.cancel)
	b.progress = append(b.progress, string(r.progress))
	b.result = append(b.result, string(r.result))
	b.resultBody = append(b.resultBody, r.resultBody)
	b.errJSON = append(b.errJSON, string(r.errJSON))
	b.created = append(b.created, r.created)
	b.updated = append(b.updated, r.updated)
	b.retention = append(b.retention, r.retention)
	b.tombstoneTTL = append(b.tombstoneTTL, r.tombstoneTTL)
	b.expires = append(b.expires, r.expires)
	b.callback = append(b.callback, string(r.callback))
}

// args returns the batch's arrays in recordColumns order, preceded by
// queue.
func (b *rowBatch) args(queue string) []any {
	return []any{queue, b.id, b.owner, b.key, b.bodyHash, b.state, b.enqueued, b.method, b.url,
		b.header, b.contentType, b.body, b.attempts, b.leaseToken, b.cancel, b.progress, b.result,
		b.resultBody, b.errJSON, b.created, b.updated, b.retention, b.tombstoneTTL, b.expires, b.callback}
}

// updateRow is a record in the shape an update writes it: its row, and
// which of its columns keep their stored values (and are not sent).
type updateRow struct {
	row
	keepBody, keepResultBody, keepRequest bool
}

// toUpdateRow converts next, the new value of the stored record old, into
// its update row. The request's fields, which a worker never changes, are
// neither converted nor sent when they equal old's; nor are the bodies.
func toUpdateRow(old, next *asyncreq.Record) (updateRow, error) {
	u := updateRow{
		keepBody:       sameBytes(old.Body, next.Body),
		keepResultBody: old.Result != nil && next.Result != nil && sameBytes(old.Result.Body, next.Result.Body),
		keepRequest:    sameRequest(old, next),
	}
	n := *next
	if u.keepRequest {
		n.Header = nil
	}
	if u.keepBody {
		n.Body = nil
	}
	if u.keepResultBody {
		res := *n.Result
		res.Body = nil
		n.Result = &res
	}
	var err error
	u.row, err = toRow(&n)
	return u, err
}

// sameRequest reports whether a and b have the same request fields (those
// of update's keep_request, the body aside).
func sameRequest(a, b *asyncreq.Record) bool {
	return a.BodyHash == b.BodyHash && a.Method == b.Method && a.URL == b.URL &&
		a.ContentType == b.ContentType && a.CreatedAt.Equal(b.CreatedAt) &&
		a.Retention == b.Retention && a.TombstoneTTL == b.TombstoneTTL &&
		(a.Header == nil) == (b.Header == nil) &&
		maps.EqualFunc(a.Header, b.Header, slices.Equal[[]string])
}

// updateRows holds the rows of a batch update column by column, in the
// order of update's arguments, and the leases its Complete calls settle.
type updateRows struct {
	id, version, state        []string
	enqueued                  []bool
	attempts                  []int32
	leaseToken                []string
	cancel                    []bool
	progress, result          []string
	resultBody                [][]byte
	keepResultBody            []bool
	errJSON                   []string
	updated                   []time.Time
	expires                   []pgtype.Timestamptz
	body                      [][]byte
	keepBody, keepRequest     []bool
	bodyHash, method, url     []string
	header, contentType       []string
	created                   []time.Time
	retention, tombstoneTTL   []int64
	callback                  []string
	settleJob                 []int64
	settleToken, settleRecord []string
}

// add appends r, to be written if its row version is still version (for
// the optimistic form). JSON columns travel as text, the empty string
// standing for NULL.
func (b *updateRows) add(r *updateRow, version string) {
	b.id = append(b.id, r.id)
	b.version = append(b.version, version)
	b.state = append(b.state, r.state)
	b.enqueued = append(b.enqueued, r.enqueued)
	b.attempts = append(b.attempts, r.attempts)
	b.leaseToken = append(b.leaseToken, r.leaseToken)
	b.cancel = append(b.cancel, r.cancel)
	b.progress = append(b.progress, string(r.progress))
	b.result = append(b.result, string(r.result))
	b.resultBody = append(b.resultBody, r.resultBody)
	b.keepResultBody = append(b.keepResultBody, r.keepResultBody)
	b.errJSON = append(b.errJSON, string(r.errJSON))
	b.updated = append(b.updated, r.updated)
	b.expires = append(b.expires, r.expires)
	b.body = append(b.body, r.body)
	b.keepBody = append(b.keepBody, r.keepBody)
	b.keepRequest = append(b.keepRequest, r.keepRequest)
	b.bodyHash = append(b.bodyHash, r.bodyHash)
	b.method = append(b.method, r.method)
	b.url = append(b.url, r.url)
	b.header = append(b.header, string(r.header))
	b.contentType = append(b.contentType, r.contentType)
	b.created = append(b.created, r.created)
	b.retention = append(b.retention, r.retention)
	b.tombstoneTTL = append(b.tombstoneTTL, r.tombstoneTTL)
	b.callback = append(b.callback, string(r.callback))
}

// settle adds the lease h of the record id, to be settled if the record is
// written.
func (b *updateRows) settle(h leaseHandle, id string) {
	b.settleJob = append(b.settleJob, h.jobID)
	b.settleToken = append(b.settleToken, h.token)
	b.settleRecord = append(b.settleRecord, id)
}

// args returns the arguments of update, starting with queue.
func (b *updateRows) args(queue string) []any {
	return []any{queue, b.id, b.version, b.state, b.enqueued, b.attempts, b.leaseToken, b.cancel,
		b.progress, b.result, b.resultBody, b.keepResultBody, b.errJSON, b.updated, b.expires,
		b.body, b.keepBody, b.keepRequest, b.bodyHash, b.method, b.url, b.header, b.contentType,
		b.created, b.retention, b.tombstoneTTL, b.callback, b.settleJob, b.settleToken, b.settleRecord}
}
