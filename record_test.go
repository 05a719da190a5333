package asyncreq

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestRecordWithoutBodies(t *testing.T) {
	rec := &Record{ID: "a", Body: []byte("in"), Header: http.Header{"X": {"1"}},
		Result: &Result{StatusCode: 200, Body: []byte("out")}}
	c := rec.WithoutBodies()
	assert.Nil(t, c.Body)
	assert.Nil(t, c.Result.Body)
	assert.Equal(t, 200, c.Result.StatusCode)
	assert.Equal(t, "a", c.ID)
	assert.Equal(t, rec.Header, c.Header)
	assert.Equal(t, []byte("in"), rec.Body, "the original keeps its body")
	assert.Equal(t, []byte("out"), rec.Result.Body, "and its result's")
	assert.Nil(t, (&Record{}).WithoutBodies().Result)
	assert.Nil(t, (*Record)(nil).WithoutBodies())
}
