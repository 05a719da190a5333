-- Listing and purging by age, for operators (asyncreq.Lister and
-- asyncreq.FinishedPurger).
--
-- updated_at is the record's UpdatedAt in Unix nanoseconds, kept beside
-- the JSON so that the final records last changed before a time are found
-- through an index; records stored before this version get theirs from
-- their JSON.
ALTER TABLE {{prefix}}records ADD COLUMN updated_at INTEGER;
UPDATE {{prefix}}records SET updated_at = asyncreq_updated_at(data);
CREATE INDEX {{prefix}}records_finished ON {{prefix}}records (queue, updated_at)
	WHERE state IN ('succeeded', 'failed', 'canceled');

-- A page of a listing, newest first, is read off one of these indexes
-- backwards from its cursor: every record of the queue; those in one
-- state; those of one owner; those of one owner in one state. A listing by
-- owner never names the owner "" (that lists every owner), so the owner
-- indexes leave out the records without one and cost nothing where
-- requests have no owners.
CREATE INDEX {{prefix}}records_list ON {{prefix}}records (queue, created_at, id);
CREATE INDEX {{prefix}}records_list_state ON {{prefix}}records (queue, state, created_at, id);
CREATE INDEX {{prefix}}records_list_owner ON {{prefix}}records (queue, owner, created_at, id)
	WHERE owner <> '';
CREATE INDEX {{prefix}}records_list_owner_state ON {{prefix}}records (queue, owner, state, created_at, id)
	WHERE owner <> '';

-- The records of each queue by state, so that counting them
-- (CountStates) reads a row a state instead of an index whole. The writer
-- adds up what the writes of a transaction change and updates these rows
-- once, before it commits (see wtx.count), so that a write costs nothing
-- more; every process that writes the file must keep them so, as every
-- process of this version does.
CREATE TABLE {{prefix}}state_counts (
	queue TEXT    NOT NULL,
	state TEXT    NOT NULL,
	n     INTEGER NOT NULL,
	PRIMARY KEY (queue, state)
) WITHOUT ROWID;
INSERT INTO {{prefix}}state_counts (queue, state, n)
	SELECT queue, state, count(*) FROM {{prefix}}records GROUP BY queue, state;
