-- 0005: indexes that list records newest first (asyncreq.Lister): a page is
-- a backward scan of one of them, WHERE (created_at, id) < (cursor) ORDER
-- BY created_at DESC, id DESC LIMIT n, which reads the page's rows and
-- nothing more, with no sort, however many records there are. Ids are
-- compared byte by byte (COLLATE "C"), as the cursor's Go strings are, so
-- the order of ids, the old 26-character ones included, does not depend
-- on the database's collation.
--
-- No index names the state column, on purpose. A row update is heap-only
-- (HOT: no new index entry for any index) only when it changes no column
-- that any index uses, in its key or in its predicate; so an index on
-- state, even a partial one such as WHERE state IN ('failed',
-- 'canceled'), would turn the Worker's claim (pending to running, which
-- changes state, attempts, lease_token and updated_at) from a HOT update
-- into one that adds an entry to the primary key and to every full index
-- below. A worker's outcome already changes expires_at (indexed by
-- records_expires_at) and is not HOT, so it pays for the new indexes
-- either way. Instead, the states are found through the columns the
-- lifecycle changes together with them:
--
--   - a pending or running record has no expires_at (every final one has
--     one): records_live holds exactly the records not finished, so the
--     records of those two states are found among the live ones, a scan
--     bounded by the backlog, not by the records retained;
--   - a failed or canceled record has an error (so has a pending or
--     running one whose earlier attempt failed): records_erred holds
--     them, so those states are found among the records with an error;
--   - succeeded, the bulk of the records retained, is a filter on the
--     scan of records_created.
--
-- Cost on the worker path: the claim stays HOT (TestClaimIsHOT); an accept
-- writes three more index entries (records_created, records_owner_created,
-- records_live) and an outcome two or three (records_created,
-- records_owner_created, and records_erred when it fails).
-- BenchmarkWorkerDrain, 20,000 jobs, 7 rounds with the variants
-- interleaved on a shared 2-core VM: median 1,937 jobs/s with these
-- indexes, 1,915 before them (within the noise), 1,747 with an index on
-- (queue, state, created_at, id) besides them, which makes the claim non-HOT
-- (7% and 19% below the baseline run in the same place of the order);
-- BenchmarkAccept showed no difference above its noise.
-- See docs/benchmarks-scale.md, "Listing".
--
-- Locking: Migrate runs every migration in one transaction, where CREATE
-- INDEX CONCURRENTLY is not allowed, so these are plain CREATE INDEX: each
-- holds a SHARE lock on records while it builds, during which reads go on
-- and every write (accepts, claims, outcomes) waits: 10 s in all at a
-- million records on a 2-core VM (4 s and 5 s for the two full indexes,
-- 0.5 s for each partial one). To migrate a large table without that pause,
-- build the indexes first, outside a transaction, with the same
-- statements written CREATE INDEX CONCURRENTLY IF NOT EXISTS (and drop
-- and build again any left INVALID by a failed build), then run Migrate:
-- IF NOT EXISTS makes this migration skip them.

CREATE INDEX IF NOT EXISTS records_created
    ON {{schema}}.records (queue, created_at, id COLLATE "C");

CREATE INDEX IF NOT EXISTS records_owner_created
    ON {{schema}}.records (queue, owner, created_at, id COLLATE "C");

CREATE INDEX IF NOT EXISTS records_live
    ON {{schema}}.records (queue, created_at, id COLLATE "C")
    WHERE expires_at IS NULL;

CREATE INDEX IF NOT EXISTS records_erred
    ON {{schema}}.records (queue, created_at, id COLLATE "C")
    WHERE error IS NOT NULL;
