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

// JobStatements exposes, by name, the statements that read or write jobs
// by their id, to the test that checks their plans.
func (s *Backend) JobStatements() map[string]string {
	return map[string]string{
		"claim":       s.sql.claim,
		"claimLocked": s.sql.claimLocked,
		"extend":      s.sql.extend,
		"nack":        s.sql.nack,
		"release":     s.sql.release,
		"ack":         s.sql.ack,
		"update":      s.sql.updateVersioned,
		"locked":      s.sql.updateLocked,
	}
}
