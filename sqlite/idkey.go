package sqlite

import (
	"database/sql/driver"
	"errors"
	"fmt"
	"hash/fnv"

	msqlite "modernc.org/sqlite"

	"github.com/asyncreq/asyncreq"
)

// idKey is the key under which a record is indexed by its id: an integer
// key makes the index about a third the size of one on (queue, id) text,
// so that with millions of records kept it still fits the writer's page
// cache, and its pages hold more entries for the readers to go through.
//
// An id made by asyncreq.NewID begins with the millisecond it was made: its
// key is that time, in the high bits, then 16 bits of a hash of the whole
// id. New records' keys thus ascend, and each accept adds its entry to the
// last page of the index, which the accepts of a group commit share,
// instead of to a page of its own at random: one page written to the WAL
// for a commit's accepts, not one for each. Any other id (the old
// 26-character form, or one given to Create by hand) is keyed by 64 bits
// of the hash. Two ids may share a key: every lookup also compares queue
// and id, and insert checks that the id is new, which the index does not.
func idKey(id string) int64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(id))
	sum := h.Sum64()
	if t, ok := asyncreq.IDTime(id); ok {
		// 47 bits of milliseconds last until the year 6429, and keep the
		// key positive.
		ms := uint64(t.UnixMilli()) & (1<<47 - 1)
		return int64(ms<<16 | sum&0xffff)
	}
	return int64(sum)
}

// errIDExists is returned by Create and Accept for a record whose id is
// already taken in its queue.
var errIDExists = errors.New("sqlite: a record with this id already exists")

// idKeyFunc is idKey as the SQL function asyncreq_id_key(id), with which
// migrations 0003 and 0006 key the records stored before them.
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
