-- The key of a record made by asyncreq.NewID begins with the id's time
-- (idKey in idkey.go): new records' keys ascend, so each accept adds its
-- entry to the last page of records_id_key instead of a random page, and a
-- group commit of many accepts writes one page of that index to the WAL,
-- not one for each. Records stored before keep the keys of the hash alone
-- until this rewrites them: a lookup computes the new key.
UPDATE {{prefix}}records SET id_key = asyncreq_id_key(id) WHERE id_key <> asyncreq_id_key(id);
