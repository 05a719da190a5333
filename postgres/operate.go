package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/asyncreq/asyncreq"
	"github.com/jackc/pgx/v5"
)

// The operator capabilities: listing and counting records, purging
// finished ones by age, and requeuing one in a transaction. None of them
// is on a Handler's or Worker's path; their statements are kept here,
// apart from the hot-path ones of store.go.

var (
	_ asyncreq.Lister         = (*Backend)(nil)
	_ asyncreq.FinishedPurger = (*Backend)(nil)
	_ asyncreq.Requeuer       = (*Backend)(nil)
)

// listColumns are recordColumns with NULL in place of the two bodies, which
// a listing leaves out: scanRecord reads them as nil.
var listColumns = func() string {
	cols := strings.Split(recordColumns, ",")
	for i, c := range cols {
		switch strings.TrimSpace(c) {
		case "body", "result_body":
			cols[i] = " NULL::bytea"
		}
	}
	return strings.Join(cols, ",")
}()

// operateStatements are the SQL texts of the operator capabilities, with
// the schema filled in.
type operateStatements struct {
	countStates, estimateSucceeded, purgeFinished, requeueGet, requeueJob string
	// list holds the listing statements by listShape.
	list map[listShape]string
}

// listShape is the form of a listing statement: which filters it has and
// whether it continues from a cursor.
type listShape struct {
	owner  bool
	states stateIndex
	cursor bool
}

// stateIndex is the index a state filter is served from (see
// migrations/0005_list.sql): none without a state filter, or the partial
// index whose predicate every record of the state meets.
type stateIndex int

const (
	noState   stateIndex = iota // no state filter
	liveState                   // pending, running: records_live (expires_at IS NULL)
	errState                    // failed, canceled: records_erred (error IS NOT NULL)
	anyState                    // succeeded: a filter on records_created
)

// stateIndexOf returns the index that serves a filter on s, and false for
// a state no record can be in.
func stateIndexOf(s asyncreq.State) (stateIndex, bool) {
	switch s {
	case "":
		return noState, true
	case asyncreq.StatePending, asyncreq.StateRunning:
		return liveState, true
	case asyncreq.StateFailed, asyncreq.StateCanceled:
		return errState, true
	case asyncreq.StateSucceeded:
		return anyState, true
	}
	return 0, false
}

// listSQL returns the listing statement of shape sh. Its arguments are
// the queue, then the owner, the state, the cursor's time and id (each
// only when sh has it), then the number of rows.
//
// The state's predicate is spelled out beside state = $n, so that the
// planner matches the partial index whatever the state's value, in a
// generic plan too; the partial predicates hold for every record of the
// states they serve, as the lifecycle leaves them.
func listSQL(schema string, sh listShape) string {
	var where []string
	args := 1
	arg := func() string { args++; return "$" + strconv.Itoa(args) }
	where = append(where, "queue = $1")
	if sh.owner {
		where = append(where, "owner = "+arg())
	}
	switch sh.states {
	case liveState:
		where = append(where, "state = "+arg(), "expires_at IS NULL")
	case errState:
		where = append(where, "state = "+arg(), "error IS NOT NULL")
	case anyState:
		where = append(where, "state = "+arg())
	}
	if sh.cursor {
		t := arg()
		where = append(where, `(created_at, id COLLATE "C") < (`+t+`::timestamptz, `+arg()+`::text COLLATE "C")`)
	}
	return `SELECT ` + listColumns + ` FROM ` + schema + `.records
		WHERE ` + strings.Join(where, " AND ") + `
		ORDER BY created_at DESC, id COLLATE "C" DESC
		LIMIT ` + arg()
}

// newOperateStatements fills the schema (an already quoted identifier)
// into the operator statements.
func newOperateStatements(schema string) operateStatements {
	f := func(q string) string {
		return strings.NewReplacer("{{s}}", schema, "{{cols}}", recordColumns).Replace(q)
	}
	st := operateStatements{list: make(map[listShape]string)}
	for _, owner := range []bool{false, true} {
		for _, states := range []stateIndex{noState, liveState, errState, anyState} {
			for _, cursor := range []bool{false, true} {
				sh := listShape{owner: owner, states: states, cursor: cursor}
				st.list[sh] = listSQL(schema, sh)
			}
		}
	}
	// Counts in one snapshot: the states of the queue's $2 newest records
	// (all of them, when there are fewer; the order makes it a scan of
	// records_created however few of the table's records are the queue's,
	// and in a generic plan too), the records not finished by
	// state from records_live, and the failed and canceled ones from
	// records_erred; the last two read only the records of their index.
	st.countStates = f(`SELECT p.n, p.pending, p.running, p.succeeded, p.failed, p.canceled,
			l.pending, l.running, e.failed, e.canceled
		FROM (SELECT count(*) AS n,
					count(*) FILTER (WHERE state = 'pending') AS pending,
					count(*) FILTER (WHERE state = 'running') AS running,
					count(*) FILTER (WHERE state = 'succeeded') AS succeeded,
					count(*) FILTER (WHERE state = 'failed') AS failed,
					count(*) FILTER (WHERE state = 'canceled') AS canceled
				FROM (SELECT state FROM {{s}}.records WHERE queue = $1
					ORDER BY created_at DESC, id COLLATE "C" DESC LIMIT $2) AS x) AS p,
			(SELECT count(*) FILTER (WHERE state = 'pending') AS pending,
					count(*) FILTER (WHERE state = 'running') AS running
				FROM {{s}}.records WHERE queue = $1 AND expires_at IS NULL) AS l,
			(SELECT count(*) FILTER (WHERE state = 'failed') AS failed,
					count(*) FILTER (WHERE state = 'canceled') AS canceled
				FROM {{s}}.records WHERE queue = $1 AND error IS NOT NULL) AS e`)
	// The planner's estimate of the queue's succeeded records.
	st.estimateSucceeded = f(`EXPLAIN (FORMAT JSON) SELECT 1 FROM {{s}}.records WHERE queue = $1 AND state = 'succeeded'`)
	// One batch: up to $3 final records last changed before $2, found
	// through records_expires_at (which holds only final records) oldest
	// expiry first, skipping rows other transactions hold; each keeps a
	// tombstone when $4, until its TombstoneTTL after $5 (now).
	st.purgeFinished = f(`WITH c AS MATERIALIZED (
				SELECT id FROM {{s}}.records
				WHERE queue = $1 AND expires_at IS NOT NULL AND updated_at < $2
					AND state IN ('succeeded', 'failed', 'canceled')
				ORDER BY expires_at
				LIMIT $3
				FOR UPDATE SKIP LOCKED
			), d AS (
				DELETE FROM {{s}}.records AS r USING c
				WHERE r.queue = $1 AND r.id = c.id
				RETURNING r.id, r.owner, r.tombstone_ttl_ns
			), t AS (
				INSERT INTO {{s}}.tombstones (queue, id, owner, expires_at)
				SELECT $1, d.id, d.owner, $5::timestamptz + d.tombstone_ttl_ns / 1000 * interval '1 microsecond'
				FROM d WHERE $4 AND d.tombstone_ttl_ns > 0
				ON CONFLICT (queue, id) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at
			)
			SELECT count(*) FROM d`)
	st.requeueGet = f(`SELECT {{cols}} FROM {{s}}.records WHERE queue = $1 AND id = $2 FOR UPDATE`)
	// Makes the queue hold one due entry for the id: a job already there
	// that no lease holds (one a request canceled before a Worker dequeued
	// it left behind, or one whose lease ran out) is made due now, with
	// its lease fenced off and its deliveries counted from zero; else a
	// job is added. Jobs have no index by id, so the lookup reads the
	// queue's jobs through jobs_due: linear in the queue's depth.
	st.requeueJob = f(`WITH old AS (
				SELECT job_id FROM {{s}}.jobs
				WHERE queue = $1 AND id = $2 AND (lease_token IS NULL OR run_at <= now())
				ORDER BY job_id
				LIMIT 1
				FOR UPDATE SKIP LOCKED
			), kept AS (
				UPDATE {{s}}.jobs AS j SET run_at = now(), lease_token = NULL, deliveries = 0
				FROM old WHERE j.job_id = old.job_id
				RETURNING j.job_id
			)
			INSERT INTO {{s}}.jobs (queue, id, run_at)
			SELECT $1, $2, now() WHERE NOT EXISTS (SELECT 1 FROM kept)`)
	return st
}

// List implements asyncreq.Lister. A page is one statement that scans an
// index backwards from the cursor and reads only the rows it returns (and
// one more, to tell whether a next page exists), with no sort: about a
// millisecond for a page of 50 of a million records (see
// docs/benchmarks-scale.md). The indexes and what each filter costs are
// those of the package doc, "Listing".
func (s *Backend) List(ctx context.Context, q asyncreq.ListQuery) (asyncreq.ListPage, error) {
	if err := s.check(ctx); err != nil {
		return asyncreq.ListPage{}, err
	}
	cur, err := asyncreq.ParseListCursor(q.Cursor)
	if err != nil {
		return asyncreq.ListPage{}, err
	}
	limit := q.PageLimit()
	sql, args, ok := s.listStatement(q.State, q.Owner, cur, limit+1)
	if !ok {
		return asyncreq.ListPage{}, nil
	}
	rows, err := s.pool.Query(ctx, sql, args...)
	if err != nil {
		return asyncreq.ListPage{}, s.fail(ctx, "list", err)
	}
	recs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*asyncreq.Record, error) {
		return scanRecord(r)
	})
	if err != nil {
		return asyncreq.ListPage{}, s.fail(ctx, "list", err)
	}
	page := asyncreq.ListPage{Records: recs}
	if len(recs) > limit {
		page.Records = recs[:limit]
		last := page.Records[limit-1]
		page.Next = asyncreq.ListCursor{CreatedAt: last.CreatedAt, ID: last.ID}.String()
	}
	return page, nil
}

// listStatement returns the statement that lists n records of state and
// owner ("" for any) after cur, with its arguments, and false for a state
// no record can be in.
func (s *Backend) listStatement(state asyncreq.State, owner string, cur asyncreq.ListCursor, n int) (string, []any, bool) {
	states, ok := stateIndexOf(state)
	if !ok {
		return "", nil, false
	}
	sh := listShape{owner: owner != "", states: states, cursor: !cur.IsZero()}
	args := []any{s.queue}
	if sh.owner {
		args = append(args, owner)
	}
	if states != noState {
		args = append(args, string(state))
	}
	if sh.cursor {
		args = append(args, cur.CreatedAt, cur.ID)
	}
	return s.ops.list[sh], append(args, n), true
}

// countExactMax is the most records a queue may hold for CountStates to
// count its succeeded records exactly.
const countExactMax = 10_000

// CountStates implements asyncreq.Lister in one statement, in one
// snapshot, plus a plan of one more when the queue is large. A queue of at
// most 10,000 records is counted exactly, state by state. In a larger one:
//
//   - pending and running are exact: counted among the records not
//     finished, through records_live, so the cost follows the backlog, not
//     the records retained;
//   - failed and canceled are exact: counted among the records with an
//     error, through records_erred, so the cost follows the failed and
//     canceled records retained;
//   - succeeded is PostgreSQL's estimate: the planner's row estimate for
//     the queue's succeeded records, from the table's statistics as of its
//     last ANALYZE (autovacuum's, after a tenth of the table changed, by
//     default) scaled to the table's current size, taking the queue and
//     the state for independent; never less than the succeeded records
//     among the 10,001 the statement looked at.
//
// A plain GROUP BY state reads every record: about 0.7 s at a million,
// against 38 ms for this with 30,000 records not succeeded (see
// docs/benchmarks-scale.md, "Listing").
func (s *Backend) CountStates(ctx context.Context) (asyncreq.StateCounts, error) {
	if err := s.check(ctx); err != nil {
		return asyncreq.StateCounts{}, err
	}
	var (
		n      int64
		first  asyncreq.StateCounts
		counts asyncreq.StateCounts
	)
	err := s.pool.QueryRow(ctx, s.ops.countStates, s.queue, countExactMax+1).Scan(&n,
		&first.Pending, &first.Running, &first.Succeeded, &first.Failed, &first.Canceled,
		&counts.Pending, &counts.Running, &counts.Failed, &counts.Canceled)
	if err != nil {
		return asyncreq.StateCounts{}, s.fail(ctx, "count states", err)
	}
	if n <= countExactMax {
		return first, nil
	}
	var raw []byte
	if err := s.pool.QueryRow(ctx, s.ops.estimateSucceeded, s.queue).Scan(&raw); err != nil {
		return asyncreq.StateCounts{}, s.fail(ctx, "count states", err)
	}
	var plan []struct {
		Plan struct {
			Rows float64 `json:"Plan Rows"`
		} `json:"Plan"`
	}
	if err := json.Unmarshal(raw, &plan); err != nil || len(plan) != 1 {
		return asyncreq.StateCounts{}, fmt.Errorf("postgres: count states: unexpected plan %.200q", raw)
	}
	counts.Succeeded = max(int64(plan[0].Plan.Rows), first.Succeeded)
	return counts, nil
}

// PurgeFinished implements asyncreq.FinishedPurger. Each call is one
// statement that deletes at most limit final records (and writes their
// tombstones), skipping rows other transactions hold, so it never waits
// on a Worker. It finds them through records_expires_at, which holds only
// final records, oldest expiry first: with one Retention for all records
// the ones last changed before the time come first, and a call that finds
// fewer than limit (the last of a purge) reads the index of every final
// record of the queue.
func (s *Backend) PurgeFinished(ctx context.Context, before time.Time, limit int, tombstone bool) (int, error) {
	if err := s.check(ctx); err != nil {
		return 0, err
	}
	if limit <= 0 {
		return 0, nil
	}
	var n int
	err := s.pool.QueryRow(ctx, s.ops.purgeFinished, s.queue, before, limit, tombstone, time.Now()).Scan(&n)
	if err != nil {
		return 0, s.fail(ctx, "purge finished", err)
	}
	return n, nil
}

// Requeue implements asyncreq.Requeuer in one transaction: it locks the
// record (SELECT ... FOR UPDATE), calls fn on it once, writes what fn
// left, and makes the queue hold a due entry for it, reusing one that no
// lease holds (a request canceled before a Worker dequeued it leaves its
// entry behind) rather than adding a second; then it commits, durably.
// Finding such an entry reads the queue's jobs, which have no index by id:
// linear in the queue's depth. An entry a Worker holds right then is left
// to it and a new one added, so that request may be delivered twice (the
// Worker fences the older attempt off with the record's lease token).
// A panic in fn is raised again after the transaction rolled back.
func (s *Backend) Requeue(ctx context.Context, id string, fn func(*asyncreq.Record) error) (*asyncreq.Record, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	if fn == nil {
		return nil, errors.New("postgres: requeue: nil function")
	}
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return nil, s.fail(ctx, "requeue "+id, err)
	}
	defer func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = tx.Rollback(rctx) // after Commit, a no-op
	}()
	old, err := scanRecord(tx.QueryRow(ctx, s.ops.requeueGet, s.queue, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, s.missing(ctx, id)
	}
	if err != nil {
		return nil, s.fail(ctx, "requeue "+id, err)
	}
	next := old.Clone()
	panicked, err := applyFn(fn, next)
	if panicked != nil {
		panic(panicked)
	}
	if err != nil {
		return nil, err
	}
	next.ID, next.Owner, next.IdempotencyKey = old.ID, old.Owner, old.IdempotencyKey
	u, err := toUpdateRow(old, next)
	if err != nil {
		return nil, err
	}
	var b updateRows
	b.add(&u, "")
	rows, err := tx.Query(ctx, s.sql.updateLocked, b.args(s.queue)...)
	if err != nil {
		return nil, s.fail(ctx, "requeue "+id, err)
	}
	written, err := collectVersions(rows)
	if err != nil {
		return nil, s.fail(ctx, "requeue "+id, err)
	}
	version, ok := written[id]
	if !ok {
		return nil, fmt.Errorf("postgres: requeue %s: the locked record was not written", id)
	}
	if _, err := tx.Exec(ctx, s.ops.requeueJob, s.queue, id); err != nil {
		return nil, s.fail(ctx, "requeue "+id, err)
	}
	if err := tx.Commit(ctx); err != nil {
		s.cache.Drop(id) // the commit's outcome may be unknown
		return nil, s.fail(ctx, "requeue "+id, err)
	}
	rec := storedCopy(next)
	s.cacheRecord(rec, version)
	s.changed(id)
	s.jobsAdded()
	return rec.Clone(), nil
}
