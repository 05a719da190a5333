package asyncreq_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/asyncreq/asyncreq"
)

type lineItem struct {
	SKU string `json:"sku"`
	Qty int    `json:"qty"`
}

type order struct {
	Customer string     `json:"customer"`
	Items    []lineItem `json:"items"`
}

func (o order) Validate() error {
	if len(o.Items) == 0 {
		return errors.New("an order needs at least one item")
	}
	return nil
}

type quote struct {
	Customer string `json:"customer"`
	Units    int    `json:"units"`
}

func quoteOrder(ctx context.Context, o order) (quote, error) {
	q := quote{Customer: o.Customer}
	for _, it := range o.Items {
		q.Units += it.Qty
	}
	return q, nil
}

func TestDecodeJSON(t *testing.T) {
	for _, tc := range []struct {
		name, contentType, body string
		status                  int
		detail                  string
	}{
		{"wrong media type", "text/plain", `{}`, http.StatusUnsupportedMediaType, "must be application/json"},
		{"bad media type", "application/", `{}`, http.StatusUnsupportedMediaType, "must be application/json"},
		{"empty", "application/json", "  ", http.StatusUnprocessableEntity, "is empty"},
		{"syntax", "application/json", `{"customer": x}`, http.StatusUnprocessableEntity, "not valid JSON: invalid character 'x' looking for beginning of value, at byte offset 14"},
		{"truncated", "application/json", `{"customer": "a"`, http.StatusUnprocessableEntity, "ends in the middle of a value"},
		{"wrong type", "application/json", `{"customer": "a", "items": [{"sku": "s", "qty": "two"}]}`, http.StatusUnprocessableEntity, `the field "items.qty" must be an integer, not a string`},
		{"fraction", "application/json", `{"items": [{"qty": 1.5}]}`, http.StatusUnprocessableEntity, `the field "items.qty" must be an integer, not a number 1.5`},
		{"not an object", "application/json", `[1]`, http.StatusUnprocessableEntity, "the request body must be an object, not an array"},
		{"unknown field", "application/json", `{"customer": "a", "discount": 10}`, http.StatusUnprocessableEntity, `unknown field "discount"`},
		{"trailing data", "application/json", `{"items": [{"qty": 1}]} {}`, http.StatusUnprocessableEntity, "data after its JSON value"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := asyncreq.DecodeJSON[order](tc.contentType, []byte(tc.body))
			var p *asyncreq.Problem
			require.ErrorAs(t, err, &p)
			assert.Equal(t, tc.status, p.Status)
			assert.Contains(t, p.Detail, tc.detail)
			assert.NotRegexp(t, `asyncreq|lineItem|order|\bint\b|\bGo\b`, p.Detail, "the detail names a Go type")
		})
	}

	_, err := asyncreq.DecodeJSON[order]("application/json", []byte(`{"customer": "a", "items": []}`))
	require.EqualError(t, err, "an order needs at least one item", "Validate's error is returned as it is")

	got, err := asyncreq.DecodeJSON[*order]("application/vnd.api+json; charset=utf-8", []byte(`{"customer": "a", "items": [{"sku": "s", "qty": 2}]}`))
	require.NoError(t, err)
	assert.Equal(t, &order{Customer: "a", Items: []lineItem{{SKU: "s", Qty: 2}}}, got)
	_, err = asyncreq.DecodeJSON[order]("", []byte(`{"items": [{"qty": 2}]}`))
	require.NoError(t, err, "no Content-Type is taken for JSON")

	// A pointer In: its Validate runs too, and null is refused.
	_, err = asyncreq.DecodeJSON[*order]("application/json", []byte(`{"items": []}`))
	require.EqualError(t, err, "an order needs at least one item")
	_, err = asyncreq.DecodeJSON[*order]("application/json", []byte(`null`))
	var p *asyncreq.Problem
	require.ErrorAs(t, err, &p)
	assert.Equal(t, "the request body must not be null", p.Detail)
}

func TestJSONProcessor(t *testing.T) {
	p := asyncreq.JSONProcessor(quoteOrder)
	ctx := context.Background()

	res, err := p.Process(ctx, &asyncreq.Request{ContentType: "application/json", Body: []byte(`{"customer": "c1", "items": [{"sku": "a", "qty": 2}, {"sku": "b", "qty": 3}]}`)})
	require.NoError(t, err)
	assert.Equal(t, http.StatusOK, res.StatusCode)
	assert.Equal(t, "application/json", res.ContentType)
	assert.JSONEq(t, `{"customer": "c1", "units": 5}`, string(res.Body))

	for body, status := range map[string]int{
		`{"customer": 1}`:                 http.StatusUnprocessableEntity,
		`{"customer": "c1", "items": []}`: http.StatusUnprocessableEntity,
	} {
		_, err := p.Process(ctx, &asyncreq.Request{ContentType: "application/json", Body: []byte(body)})
		var pe *asyncreq.PermanentError
		require.ErrorAs(t, err, &pe, body)
		assert.Equal(t, status, pe.Status, body)
	}

	// fn's own errors are the Processor's: a plain one is retried.
	boom := errors.New("pricing service down")
	p = asyncreq.JSONProcessor(func(ctx context.Context, o order) (quote, error) { return quote{}, boom })
	_, err = p.Process(ctx, &asyncreq.Request{Body: []byte(`{"items": [{"qty": 1}]}`)})
	require.ErrorIs(t, err, boom)
	var pe *asyncreq.PermanentError
	assert.False(t, errors.As(err, &pe))

	// An Out that cannot be encoded fails for good.
	p = asyncreq.JSONProcessor(func(ctx context.Context, o order) (chan int, error) { return make(chan int), nil })
	_, err = p.Process(ctx, &asyncreq.Request{Body: []byte(`{"items": [{"qty": 1}]}`)})
	require.ErrorAs(t, err, &pe)
	assert.Equal(t, http.StatusInternalServerError, pe.Status)
	var jerr *json.UnsupportedTypeError
	assert.ErrorAs(t, err, &jerr, "the encoding error is kept for the log")
}

func TestValidateJSONRefusesAtSubmit(t *testing.T) {
	b := newMemory(t)
	store := &creates{Store: b}
	h := newTestHandler(t, asyncreq.Pair(store, b), &asyncreq.HandlerOptions{Validate: asyncreq.ValidateJSON[order]})

	rr := serveReq(t, h, http.MethodPost, "/", `{"customer": "c1", "items": [{"sku": "a", "qty": "x"}]}`, "Content-Type", "application/json")
	doc := checkProblem(t, rr, http.StatusUnprocessableEntity)
	assert.Contains(t, rr.Body.String(), `items.qty`, doc)
	rr = serveReq(t, h, http.MethodPost, "/", `{"customer": "c1", "items": []}`, "Content-Type", "application/json")
	checkProblem(t, rr, http.StatusUnprocessableEntity)
	assert.Contains(t, rr.Body.String(), "at least one item")
	rr = serveReq(t, h, http.MethodPost, "/", `{}`, "Content-Type", "text/plain")
	checkProblem(t, rr, http.StatusUnsupportedMediaType)

	_, err := h.Submit(context.Background(), asyncreq.Submission{ContentType: "application/json", Body: []byte(`{"items": [}`)})
	require.ErrorIs(t, err, asyncreq.ErrRejected)
	assert.Empty(t, store.ids, "nothing was stored")

	rr = serveReq(t, h, http.MethodPost, "/", `{"customer": "c1", "items": [{"sku": "a", "qty": 1}]}`, "Content-Type", "application/json")
	require.Equal(t, http.StatusAccepted, rr.Code, rr.Body.String())
	assert.Len(t, store.ids, 1)
	assert.False(t, strings.Contains(rr.Body.String(), "problem"))
}
