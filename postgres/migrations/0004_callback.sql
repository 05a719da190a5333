-- 0004: a record keeps the completion callback its submit asked for and
-- how its delivery stands (asyncreq.Record.Callback), as JSON; NULL when
-- there is none.

ALTER TABLE {{schema}}.records ADD COLUMN callback jsonb;
