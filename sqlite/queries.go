package sqlite

import (
	"strconv"
	"strings"
)

// queries holds the SQL of one table prefix. Every statement takes the queue
// name as ?1. A statement that finds a record by its id also takes the id's
// key (idKey) as its last parameter: the index behind lookups by id holds
// that integer, not the id (see migrations/0003_id_key.sql).
//
// Every INSERT and UPDATE resolves a broken constraint with FAIL, not
// SQLite's default ABORT. ABORT undoes what the failing statement had
// already changed, so that a statement that may change more than one row
// (an UPDATE whose WHERE is not a rowid, a claim) first copies every page
// it writes into a statement journal: 8% of the writer's work.
// The writer never keeps a transaction in which a statement failed (see
// engine.runBatch), so there is nothing for the copies to restore. (The
// DO UPDATE of an upsert cannot say FAIL; it changes one row, which SQLite
// does not journal.) TestWritePrograms keeps it so.
type queries struct {
	getRecord       string
	recordExists    string
	getTombstone    string
	getByIdemKey    string
	insertRecord    string
	updateRecord    string
	updateRecordAll string
	deleteRecord    string
	putTombstone    string
	purgeRecords    string
	purgeTombstones string
	listUnenqueued  string

	// The listings (see list.go): by no filter, state, owner, or both,
	// from the start or after a cursor.
	listAll, listAllAfter               string
	listState, listStateAfter           string
	listOwner, listOwnerAfter           string
	listOwnerState, listOwnerStateAfter string
	countStates                         string
	purgeFinished                       string
	waitingEntry                        string

	enqueue string
	claim   string
	nextDue string
	extend  string
	refresh string
	ack     string
	nack    string

	statsDue    string
	statsNotDue string
}

func newQueries(prefix string) queries {
	r := func(q string) string { return strings.ReplaceAll(q, "{{prefix}}", prefix) }
	return queries{
		getRecord: r(`SELECT data, body, result_body FROM {{prefix}}records
			WHERE id_key = ?3 AND queue = ?1 AND id = ?2`),
		recordExists: r(`SELECT EXISTS (SELECT 1 FROM {{prefix}}records
			WHERE id_key = ?3 AND queue = ?1 AND id = ?2)`),
		getTombstone: r(`SELECT until, owner FROM {{prefix}}tombstones
			WHERE queue = ?1 AND id = ?2`),
		getByIdemKey: r(`SELECT data, body, result_body FROM {{prefix}}records
			WHERE queue = ?1 AND owner = ?2 AND idem_key = ?3`),
		insertRecord: r(`INSERT OR FAIL INTO {{prefix}}records
			(queue, id, owner, idem_key, state, enqueued, created_at, expires_at, tombstone_ttl, data, body, result_body, id_key, updated_at)
			VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)`),
		// updateRecord leaves the request body alone; updateRecordAll also
		// rewrites it (only when an update changed it).
		updateRecord: r(`UPDATE OR FAIL {{prefix}}records
			SET state = ?3, enqueued = ?4, expires_at = ?5, tombstone_ttl = ?6, data = ?7, result_body = ?8, updated_at = ?10
			WHERE id_key = ?9 AND queue = ?1 AND id = ?2`),
		updateRecordAll: r(`UPDATE OR FAIL {{prefix}}records
			SET state = ?3, enqueued = ?4, expires_at = ?5, tombstone_ttl = ?6, data = ?7, result_body = ?8, body = ?9, updated_at = ?11
			WHERE id_key = ?10 AND queue = ?1 AND id = ?2`),
		deleteRecord: r(`DELETE FROM {{prefix}}records WHERE id_key = ?3 AND queue = ?1 AND id = ?2
			RETURNING tombstone_ttl, owner, state`),
		putTombstone: r(`INSERT OR FAIL INTO {{prefix}}tombstones (queue, id, until, owner) VALUES (?1, ?2, ?3, ?4)
			ON CONFLICT (queue, id) DO UPDATE SET until = max(until, excluded.until), owner = excluded.owner`),
		// purgeRecords deletes up to ?3 final records expired at ?2 and
		// returns when each one's tombstone runs out, its owner and state.
		purgeRecords: r(`DELETE FROM {{prefix}}records
			WHERE rowid IN (
				SELECT rowid FROM {{prefix}}records
				WHERE queue = ?1 AND expires_at IS NOT NULL AND expires_at <= ?2
					AND state NOT IN ('pending', 'running')
				ORDER BY expires_at LIMIT CAST(?3 AS INTEGER))
			RETURNING id, expires_at + tombstone_ttl, owner, state`),
		purgeTombstones: r(`DELETE FROM {{prefix}}tombstones
			WHERE queue = ?1 AND id IN (
				SELECT id FROM {{prefix}}tombstones WHERE queue = ?1 AND until <= ?2 LIMIT CAST(?3 AS INTEGER))`),
		listUnenqueued: r(`SELECT id FROM {{prefix}}records
			WHERE queue = ?1 AND enqueued = 0 AND state IN ('pending', 'running') AND created_at < ?2
			ORDER BY created_at LIMIT CAST(?3 AS INTEGER)`),

		listAll:             r(listSQL(false, false, false)),
		listAllAfter:        r(listSQL(false, false, true)),
		listState:           r(listSQL(true, false, false)),
		listStateAfter:      r(listSQL(true, false, true)),
		listOwner:           r(listSQL(false, true, false)),
		listOwnerAfter:      r(listSQL(false, true, true)),
		listOwnerState:      r(listSQL(true, true, false)),
		listOwnerStateAfter: r(listSQL(true, true, true)),
		// countStates reads the counts the writer keeps (see wtx.count).
		countStates: r(`SELECT state, n FROM {{prefix}}state_counts WHERE queue = ?1`),
		// purgeFinished deletes up to ?3 final records last changed before
		// ?2, oldest first, and returns the id, tombstone TTL, owner and
		// state of each. It names the final states as the WHERE of
		// records_finished does (0005_finished_not_in.sql), for SQLite to
		// use that index.
		purgeFinished: r(`DELETE FROM {{prefix}}records
			WHERE rowid IN (
				SELECT rowid FROM {{prefix}}records
				WHERE queue = ?1 AND state NOT IN ('pending', 'running') AND updated_at < ?2
				ORDER BY updated_at LIMIT CAST(?3 AS INTEGER))
			RETURNING id, tombstone_ttl, owner, state`),
		// waitingEntry finds an entry of id ?2 that no lease holds at ?3.
		// No index has the queue's ids (see 0001_init.sql), so it reads
		// every entry of the queue: only a Requeue of a canceled record
		// runs it.
		waitingEntry: r(`SELECT EXISTS (SELECT 1 FROM {{prefix}}queue
			WHERE queue = ?1 AND id = ?2 AND (token IS NULL OR due <= ?3))`),

		// enqueue adds an entry due at ?3.
		enqueue: r(`INSERT OR FAIL INTO {{prefix}}queue (queue, id, due) VALUES (?1, ?2, ?3)`),
		// claim leases up to ?3 entries due at ?2 until ?4, oldest first.
		claim: r(`UPDATE OR FAIL {{prefix}}queue
			SET due = ?4, deliveries = deliveries + 1, token = lower(hex(randomblob(16)))
			WHERE seq IN (
				SELECT seq FROM {{prefix}}queue WHERE queue = ?1 AND due <= ?2 ORDER BY due, seq LIMIT CAST(?3 AS INTEGER))
			RETURNING seq, id, deliveries, token`),
		nextDue: r(`SELECT min(due) FROM {{prefix}}queue WHERE queue = ?1`),
		// extend, ack and nack act only on a lease that is still held:
		// the entry ?2 still has the token ?3 and it has not run out at ?4.
		extend: r(`UPDATE OR FAIL {{prefix}}queue SET due = ?5
			WHERE seq = ?2 AND queue = ?1 AND token = ?3 AND due > ?4`),
		// refresh sets the due time of the lease ?2 with the token ?3,
		// taken in the same transaction, to ?4.
		refresh: r(`UPDATE OR FAIL {{prefix}}queue SET due = ?4
			WHERE seq = ?2 AND queue = ?1 AND token = ?3`),
		ack: r(`DELETE FROM {{prefix}}queue
			WHERE seq = ?2 AND queue = ?1 AND token = ?3 AND due > ?4`),
		nack: r(`UPDATE OR FAIL {{prefix}}queue SET due = ?5, token = NULL
			WHERE seq = ?2 AND queue = ?1 AND token = ?3 AND due > ?4`),

		// statsDue counts the entries due at ?2 and finds the earliest due
		// time among them, from the (queue, due) index alone.
		statsDue: r(`SELECT count(*), min(due) FROM {{prefix}}queue WHERE queue = ?1 AND due <= ?2`),
		// statsNotDue splits the entries not due at ?2 into delayed (no
		// lease) and leased ones; it reads the row of each for its token.
		statsNotDue: r(`SELECT count(*) FILTER (WHERE token IS NULL), count(*) FILTER (WHERE token IS NOT NULL)
			FROM {{prefix}}queue WHERE queue = ?1 AND due > ?2`),
	}
}

// listSQL returns the statement of a listing page: the records of queue ?1
// (in state ?2, of owner ?n, after the cursor (?n, ?n+1), as asked),
// newest first, at most the limit in its last parameter. Its parameters
// are numbered in that order, without gaps.
func listSQL(state, owner, after bool) string {
	var b strings.Builder
	n := 1
	param := func() string { n++; return "?" + strconv.Itoa(n) }
	b.WriteString(`SELECT created_at, id, data FROM {{prefix}}records WHERE queue = ?1`)
	if state {
		b.WriteString(` AND state = ` + param())
	}
	if owner {
		// owner <> '' lets the partial indexes of 0004_list.sql serve.
		b.WriteString(` AND owner = ` + param() + ` AND owner <> ''`)
	}
	if after {
		c := param()
		b.WriteString(` AND (created_at, id) < (` + c + `, ` + param() + `)`)
	}
	b.WriteString(` ORDER BY created_at DESC, id DESC LIMIT CAST(` + param() + ` AS INTEGER)`)
	return b.String()
}
