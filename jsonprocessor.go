package asyncreq

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"reflect"
	"strings"
)

// This file is the typed JSON processor: a function from a Go value to a
// Go value becomes a Processor, and the same decoding checks a submit
// before anything is stored.

// JSONProcessor returns a Processor that decodes the request body as JSON
// into an In, validates it, runs fn, and records fn's Out, encoded as
// JSON, as the result: 200 OK, application/json.
//
// The body is decoded once, strictly, by DecodeJSON: a body that is not
// one JSON value of In's shape (syntax errors, unknown object fields, a
// value of the wrong JSON type, trailing data, an empty body, a
// Content-Type that is neither application/json nor a +json type nor
// absent) is refused. When In (or *In) has a method Validate() error, it
// is called on the decoded value. A refused body fails the request for
// good (no retry) with a 422 problem (415 for the Content-Type) whose
// detail says what is wrong and where (the field's JSON path, the byte
// offset of a syntax error), but names no Go type. A Validate error is
// shown as HandlerOptions.Validate's are: a *Problem as it is, any other
// error's text as the detail of a 422.
//
// The body is no larger than the Handler's MaxBodyBytes, which it refused
// at submit. Check it at submit too, so that bad input is answered 422 at
// once and nothing is stored: NewEndpoint does this by itself for a
// JSONProcessor; a Handler of its own takes ValidateJSON[In] as its
// HandlerOptions.Validate.
//
// fn's errors are the Processor's (see Processor): a plain error is a
// failed attempt, retried; Permanent fails for good. An Out that cannot be
// encoded fails the request for good with a 500.
func JSONProcessor[In, Out any](fn func(ctx context.Context, in In) (Out, error)) Processor {
	return jsonProcessor[In, Out]{fn: fn}
}

type jsonProcessor[In, Out any] struct {
	fn func(ctx context.Context, in In) (Out, error)
}

// Process implements Processor.
func (p jsonProcessor[In, Out]) Process(ctx context.Context, req *Request) (*Result, error) {
	in, err := DecodeJSON[In](req.ContentType, req.Body)
	if err != nil {
		var pr *Problem
		if errors.As(err, &pr) && pr != nil {
			status := pr.Status
			if !validProblemStatus(status) {
				status = http.StatusUnprocessableEntity // as HandlerOptions.Validate's
			}
			return nil, Permanent(pr, status)
		}
		return nil, Permanent(err, http.StatusUnprocessableEntity)
	}
	out, err := p.fn(ctx, in)
	if err != nil {
		return nil, err
	}
	body, err := json.Marshal(out)
	if err != nil {
		return nil, Permanent(&problemError{problem: failedProblem("the result cannot be encoded as JSON"), err: err}, http.StatusInternalServerError)
	}
	return &Result{StatusCode: http.StatusOK, ContentType: "application/json", Body: body}, nil
}

// validateSubmit is the check NewEndpoint makes HandlerOptions.Validate
// when the options set none: the processor's own decoding.
func (jsonProcessor[In, Out]) validateSubmit(r *http.Request, body []byte) error {
	return ValidateJSON[In](r, body)
}

// submitValidator is implemented by a Processor that can check a request
// at submit as it will check it when it runs (JSONProcessor's).
type submitValidator interface {
	validateSubmit(r *http.Request, body []byte) error
}

// ValidateJSON is a HandlerOptions.Validate that refuses, at submit and
// with nothing stored, a body that JSONProcessor[In, Out] would refuse:
// the same DecodeJSON, the same answers.
func ValidateJSON[In any](r *http.Request, body []byte) error {
	_, err := DecodeJSON[In](r.Header.Get("Content-Type"), body)
	return err
}

// DecodeJSON decodes body, of the media type contentType, into an In and
// validates it, as JSONProcessor does: strictly (one JSON value, no
// unknown object fields, nothing after it), then In's Validate method if
// it has one. A refusal is a *Problem fit for the client: 415 for a
// contentType that is not empty, application/json or a +json type; 422
// for the body, with the JSON path of a field of the wrong type or
// unknown, or the byte offset of a syntax error. An error of In's Validate
// is returned as it is.
func DecodeJSON[In any](contentType string, body []byte) (In, error) {
	var in In
	if contentType != "" {
		mt, _, err := mime.ParseMediaType(contentType)
		if err != nil || mt != "application/json" && !strings.HasSuffix(mt, "+json") {
			return in, newProblem(http.StatusUnsupportedMediaType, "the request body must be application/json")
		}
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return in, newProblem(http.StatusUnprocessableEntity, "the request body is empty; a JSON value is required")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		return in, newProblem(http.StatusUnprocessableEntity, jsonErrorDetail(err))
	}
	if _, err := dec.Token(); err != io.EOF {
		return in, newProblem(http.StatusUnprocessableEntity, fmt.Sprintf("the request body has data after its JSON value, at byte offset %d", dec.InputOffset()))
	}
	if rv := reflect.ValueOf(&in).Elem(); rv.Kind() == reflect.Pointer && rv.IsNil() {
		// A JSON null for a pointer In: fn would be handed nil.
		return in, newProblem(http.StatusUnprocessableEntity, "the request body must not be null")
	}
	v, ok := any(&in).(validator)
	if !ok {
		v, ok = any(in).(validator) // In is a pointer to a type with Validate
	}
	if ok {
		if err := v.Validate(); err != nil {
			return in, err
		}
	}
	return in, nil
}

// validator is implemented by an input that checks itself after it is
// decoded.
type validator interface{ Validate() error }

// jsonErrorDetail says what is wrong with a body that encoding/json
// refused, naming JSON types and paths, never Go types.
func jsonErrorDetail(err error) string {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return fmt.Sprintf("the request body is not valid JSON: %s, at byte offset %d", strings.TrimPrefix(syn.Error(), "json: "), syn.Offset)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "the request body is not valid JSON: it ends in the middle of a value"
	case errors.As(err, &typ):
		want := jsonKind(typ.Type)
		if typ.Field == "" {
			return fmt.Sprintf("the request body must be %s, not %s", want, article(typ.Value))
		}
		return fmt.Sprintf("the field %q must be %s, not %s", typ.Field, want, article(typ.Value))
	}
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		return "the request body has an unknown field " + name
	}
	return "the request body is not a valid JSON value for this request"
}

// jsonKind names the JSON type that a Go type decodes from.
func jsonKind(t reflect.Type) string {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nil {
		return "a JSON value"
	}
	switch t.Kind() {
	case reflect.Bool:
		return "a boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.String:
		return "a string"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Struct, reflect.Map:
		return "an object"
	}
	return "another JSON value"
}

// article returns what encoding/json calls a JSON value ("string",
// "number 1.5", "object") with an article.
func article(v string) string {
	if v == "" {
		return "this value"
	}
	switch v[0] {
	case 'a', 'e', 'i', 'o', 'u':
		return "an " + v
	}
	return "a " + v
}
