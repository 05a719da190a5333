-- 0002: tombstones keep the owner of their record, so that a handler
-- answers "gone" to that owner only and "not found" to every other. A
-- tombstone written before this column existed has none (NULL); a handler
-- with owners answers it "not found" to all.

ALTER TABLE {{schema}}.tombstones ADD COLUMN owner text;
