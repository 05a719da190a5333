-- Records: one row per request. The JSON in data holds every field of
-- asyncreq.Record except the two bodies, which are kept as BLOBs.
CREATE TABLE {{prefix}}records (
	queue         TEXT    NOT NULL,
	id            TEXT    NOT NULL,
	owner         TEXT    NOT NULL,
	idem_key      TEXT,
	state         TEXT    NOT NULL,
	enqueued      INTEGER NOT NULL,
	created_at    INTEGER NOT NULL,
	expires_at    INTEGER,
	tombstone_ttl INTEGER NOT NULL,
	data          BLOB    NOT NULL,
	body          BLOB,
	result_body   BLOB
);
CREATE UNIQUE INDEX {{prefix}}records_id ON {{prefix}}records (queue, id);
CREATE UNIQUE INDEX {{prefix}}records_idem ON {{prefix}}records (queue, owner, idem_key)
	WHERE idem_key IS NOT NULL;
CREATE INDEX {{prefix}}records_expires ON {{prefix}}records (queue, expires_at)
	WHERE expires_at IS NOT NULL;
CREATE INDEX {{prefix}}records_unenqueued ON {{prefix}}records (queue, created_at)
	WHERE enqueued = 0 AND state IN ('pending', 'running');

-- Tombstones: what is left of a purged or deleted record, so that its id
-- answers "gone" until the tombstone runs out.
CREATE TABLE {{prefix}}tombstones (
	queue TEXT    NOT NULL,
	id    TEXT    NOT NULL,
	until INTEGER NOT NULL,
	PRIMARY KEY (queue, id)
) WITHOUT ROWID;
CREATE INDEX {{prefix}}tombstones_until ON {{prefix}}tombstones (queue, until);

-- Queue entries. due is when the entry may next be delivered: the time it
-- becomes ready, or, while it is leased, when the lease runs out. token is
-- the handle of the current (or last) lease; a lease names its entry by seq,
-- so that no index on the random ids is needed and an enqueue appends to
-- both B-trees of the table.
CREATE TABLE {{prefix}}queue (
	seq        INTEGER PRIMARY KEY,
	queue      TEXT    NOT NULL,
	id         TEXT    NOT NULL,
	due        INTEGER NOT NULL,
	deliveries INTEGER NOT NULL DEFAULT 0,
	token      TEXT
);
CREATE INDEX {{prefix}}queue_due ON {{prefix}}queue (queue, due);
