-- Records are found by id through an index on id_key, a 64-bit hash of the
-- id (idKey in idkey.go), instead of the unique index on (queue, id) text.
-- Ids are random, so every new record is inserted on a random page of that
-- index: kept small (about a third the size), it stays in the writer's
-- page cache with millions of finished records retained, where the index on
-- text did not and every accept read and wrote a page of its own. Lookups
-- compare queue and id on the row; the backend checks that an id is new.
-- (0002 is kept by the tombstones' owner column.)
ALTER TABLE {{prefix}}records ADD COLUMN id_key INTEGER;
UPDATE {{prefix}}records SET id_key = asyncreq_id_key(id);
CREATE INDEX {{prefix}}records_id_key ON {{prefix}}records (id_key);
DROP INDEX {{prefix}}records_id;
