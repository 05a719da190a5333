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

-- The records of each queue by state, kept by triggers in the same
-- transaction as every write of a record, so that counting them
-- (CountStates) reads a row a state instead of an index whole: a write
-- that adds, deletes or changes the state of a record also updates one or
-- two of these rows, which stay in the writer's page cache.
CREATE TABLE {{prefix}}state_counts (
	queue TEXT    NOT NULL,
	state TEXT    NOT NULL,
	n     INTEGER NOT NULL,
	PRIMARY KEY (queue, state)
) WITHOUT ROWID;
INSERT INTO {{prefix}}state_counts (queue, state, n)
	SELECT queue, state, count(*) FROM {{prefix}}records GROUP BY queue, state;
CREATE TRIGGER {{prefix}}records_count_insert AFTER INSERT ON {{prefix}}records
BEGIN
	INSERT INTO {{prefix}}state_counts (queue, state, n) VALUES (new.queue, new.state, 1)
		ON CONFLICT (queue, state) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER {{prefix}}records_count_delete AFTER DELETE ON {{prefix}}records
BEGIN
	UPDATE {{prefix}}state_counts SET n = n - 1 WHERE queue = old.queue AND state = old.state;
END;
CREATE TRIGGER {{prefix}}records_count_update AFTER UPDATE OF state ON {{prefix}}records
	WHEN old.state IS NOT new.state
BEGIN
	UPDATE {{prefix}}state_counts SET n = n - 1 WHERE queue = old.queue AND state = old.state;
	INSERT INTO {{prefix}}state_counts (queue, state, n) VALUES (new.queue, new.state, 1)
		ON CONFLICT (queue, state) DO UPDATE SET n = n + 1;
END;
