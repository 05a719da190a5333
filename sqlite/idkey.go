package sqlite

import (
	"database/sql/driver"
	"errors"
	"fmt"
	"hash/fnv"

	msqlite "modernc.org/sqlite"
)

// idKey is the key under which a record is indexed by its id: 64 bits of
// a hash of the id. Ids are random, so each new record lands on a random
// page of that index; an integer key makes the index about a third the
// size of one on (queue, id) text, so that with millions of records kept
// it still fits the writer's page cache, and its pages hold more entries
// for the readers to go through. Two ids may share a key: every lookup
// also compares queue and id, and insert checks that the id is new, which
// the index no longer does.
func idKey(id string) int64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(id))
	return int64(h.Sum64())
}

// errIDExists is returned by Create and Accept for a record whose id is
// already taken in its queue.
var errIDExists = errors.New("sqlite: a record with this id already exists")

// idKeyFunc is idKey as the SQL function asyncreq_id_key(id), with which
// migration 0003 keys the records stored before it.
func idKeyFunc(_ *msqlite.FunctionContext, args []driver.Value) (driver.Value, error) {
	switch v := args[0].(type) {
	case string:
		return idKey(v), nil
	case []byte:
		return idKey(string(v)), nil
	default:
		return nil, fmt.Errorf("asyncreq_id_key: id is %T, not text", v)
	}
}

func init() {
	msqlite.MustRegisterDeterministicScalarFunction("asyncreq_id_key", 1, idKeyFunc)
}
