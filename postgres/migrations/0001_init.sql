-- 0001: records, tombstones and the job queue.
--
-- Every row carries the name of the queue (Options.Queue) it belongs to, so
-- several endpoints can share one schema.

CREATE TABLE {{schema}}.records (
    queue            text        NOT NULL,
    id               text        NOT NULL,
    owner            text        NOT NULL DEFAULT '',
    idempotency_key  text        NOT NULL DEFAULT '',
    body_hash        text        NOT NULL DEFAULT '',
    state            text        NOT NULL,
    enqueued         boolean     NOT NULL DEFAULT false,
    method           text        NOT NULL DEFAULT '',
    url              text        NOT NULL DEFAULT '',
    header           jsonb,
    content_type     text        NOT NULL DEFAULT '',
    body             bytea,
    attempts         integer     NOT NULL DEFAULT 0,
    lease_token      text        NOT NULL DEFAULT '',
    cancel_requested boolean     NOT NULL DEFAULT false,
    progress         jsonb,
    result           jsonb,
    result_body      bytea,
    error            jsonb,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    retention_ns     bigint      NOT NULL DEFAULT 0,
    tombstone_ttl_ns bigint      NOT NULL DEFAULT 0,
    expires_at       timestamptz,
    -- id first: a lookup of many ids (id = ANY(...)) uses the index
    -- whatever the planner's statistics say about queue.
    PRIMARY KEY (id, queue)
) WITH (
    -- Room on each page for the new version of a record a worker updates,
    -- so that updates touching no indexed column stay heap-only (HOT).
    fillfactor = 80
);

-- Owner and idempotency key are unique among the records of a queue.
CREATE UNIQUE INDEX records_idempotency_key
    ON {{schema}}.records (queue, owner, idempotency_key)
    WHERE idempotency_key <> '';

-- Purge finds expired final records without scanning live ones.
CREATE INDEX records_expires_at
    ON {{schema}}.records (queue, expires_at)
    WHERE expires_at IS NOT NULL;

-- The worker's sweep finds records that never reached the queue. (The
-- predicate leaves out state, so that a state change alone does not make
-- an update touch an index.)
CREATE INDEX records_unenqueued
    ON {{schema}}.records (queue, created_at)
    WHERE NOT enqueued;

CREATE TABLE {{schema}}.tombstones (
    queue      text        NOT NULL,
    id         text        NOT NULL,
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (queue, id)
);

CREATE INDEX tombstones_expires_at ON {{schema}}.tombstones (queue, expires_at);

-- A job is one queue entry. run_at is when it is next due: the time it was
-- enqueued for while it waits, and the end of its lease while it is leased
-- (lease_token is then set), so an expired lease is simply due again.
CREATE TABLE {{schema}}.jobs (
    job_id      bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    queue       text        NOT NULL,
    id          text        NOT NULL,
    run_at      timestamptz NOT NULL,
    lease_token text,
    deliveries  integer     NOT NULL DEFAULT 0
) WITH (
    -- Every job is inserted, updated and deleted within moments: vacuum
    -- the table long before the default 20% of it is dead.
    autovacuum_vacuum_scale_factor = 0.01,
    autovacuum_analyze_scale_factor = 0.02
);

CREATE INDEX jobs_due ON {{schema}}.jobs (queue, run_at, job_id);
