package postgres

import "github.com/asyncreq/asyncreq"

// ListStatement exposes the listing statement of a query to the tests that
// check its plan.
func (s *Backend) ListStatement(q asyncreq.ListQuery) (string, []any, error) {
	cur, err := asyncreq.ParseListCursor(q.Cursor)
	if err != nil {
		return "", nil, err
	}
	sql, args, _ := s.listStatement(q.State, q.Owner, cur, q.PageLimit()+1)
	return sql, args, nil
}
