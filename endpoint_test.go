package asyncreq_test

import (
	"context"
	"errors"
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/asyncreq/asyncreq"
)

func TestEndpointWithJSONProcessor(t *testing.T) {
	b := newMemory(t)
	store := &creates{Store: b}
	ep, err := asyncreq.NewEndpoint(asyncreq.Pair(store, b), asyncreq.JSONProcessor(quoteOrder), nil)
	require.NoError(t, err)
	require.NoError(t, ep.Start(context.Background()))
	t.Cleanup(func() { _ = ep.Stop(context.Background()) })

	// The processor's decoding refuses bad input at submit: nothing stored.
	rr := serveReq(t, ep, http.MethodPost, "/", `{"customer": "c1", "items": [{"sku": "a", "qty": "x"}]}`, "Content-Type", "application/json")
	checkProblem(t, rr, http.StatusUnprocessableEntity)
	assert.Contains(t, rr.Body.String(), "items.qty")
	_, err = ep.Submit(context.Background(), asyncreq.Submission{ContentType: "application/json", Body: []byte(`{"customer": "c1", "items": []}`)})
	require.ErrorIs(t, err, asyncreq.ErrRejected)
	assert.Empty(t, store.ids)

	rr = serveReq(t, ep, http.MethodPost, "/", `{"customer": "c1", "items": [{"sku": "a", "qty": 2}]}`, "Content-Type", "application/json", "Prefer", "wait=10")
	require.Equal(t, http.StatusOK, rr.Code, rr.Body.String())
	assert.Equal(t, "application/json", rr.Header().Get("Content-Type"))
	assert.JSONEq(t, `{"customer": "c1", "units": 2}`, rr.Body.String())

	sub, err := ep.Submit(context.Background(), asyncreq.Submission{ContentType: "application/json", Body: []byte(`{"customer": "c2", "items": [{"qty": 7}]}`)})
	require.NoError(t, err)
	rr = serveReq(t, ep, http.MethodGet, sub.StatusURL, "", "Prefer", "wait=10")
	for rr.Code == http.StatusOK {
		rr = serveReq(t, ep, http.MethodGet, sub.StatusURL, "", "Prefer", "wait=10")
	}
	require.Equal(t, http.StatusSeeOther, rr.Code)
	rr = serveReq(t, ep, http.MethodGet, sub.ResultURL, "")
	assert.JSONEq(t, `{"customer": "c2", "units": 7}`, rr.Body.String())
}

func TestEndpointKeepsItsOwnValidate(t *testing.T) {
	b := newMemory(t)
	refuse := errors.New("closed for inventory")
	ep, err := asyncreq.NewEndpoint(b, asyncreq.JSONProcessor(quoteOrder), &asyncreq.EndpointOptions{
		Handler: asyncreq.HandlerOptions{Validate: func(*http.Request, []byte) error { return refuse }},
	})
	require.NoError(t, err)
	rr := serveReq(t, ep, http.MethodPost, "/", `{"items": [{"qty": 1}]}`, "Content-Type", "application/json")
	checkProblem(t, rr, http.StatusUnprocessableEntity)
	assert.Contains(t, rr.Body.String(), "closed for inventory")
	require.NoError(t, ep.Stop(context.Background()), "Stop before Start")
}

func TestNewEndpointValidation(t *testing.T) {
	b := newMemory(t)
	_, err := asyncreq.NewEndpoint(b, nil, nil)
	require.ErrorContains(t, err, "nil Processor")
	_, err = asyncreq.NewEndpoint(asyncreq.Pair(nil, b), upperProcessor, nil)
	require.ErrorContains(t, err, "nil Store")
	_, err = asyncreq.NewEndpoint(b, upperProcessor, &asyncreq.EndpointOptions{Handler: asyncreq.HandlerOptions{MaxBodyBytes: -1}})
	require.ErrorContains(t, err, "MaxBodyBytes")
	_, err = asyncreq.NewEndpoint(b, upperProcessor, &asyncreq.EndpointOptions{Worker: asyncreq.WorkerOptions{Concurrency: -1}})
	require.ErrorContains(t, err, "Concurrency")

	ep, err := asyncreq.NewEndpoint(b, upperProcessor, nil)
	require.NoError(t, err)
	assert.NotNil(t, ep.Handler())
	assert.NotNil(t, ep.Worker())
}
