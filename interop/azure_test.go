package interop

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/streaming"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/asyncreq/asyncreq"
)

// The Azure SDK for Go's poller (runtime.NewPoller on the 202 of a submit)
// against a handler in the mode for generic pollers, its URLs absolute on
// PublicURL.

// azureOptions are the handler options the Azure poller needs.
var azureOptions = asyncreq.HandlerOptions{AcceptedWhilePending: true}

// azureSubmit posts body to the server's /jobs through an Azure pipeline
// and returns the poller the SDK makes of the answer.
func azureSubmit(t *testing.T, s *testServer, pl runtime.Pipeline, body string) (*runtime.Poller[echo], error) {
	t.Helper()
	req, err := runtime.NewRequest(t.Context(), http.MethodPost, s.URL+"/jobs")
	require.NoError(t, err)
	require.NoError(t, req.SetBody(streaming.NopCloser(bytes.NewReader([]byte(body))), "text/plain"))
	resp, err := pl.Do(req)
	require.NoError(t, err)
	require.Equal(t, http.StatusAccepted, resp.StatusCode)
	return runtime.NewPoller[echo](resp, pl, nil)
}

// azurePipeline returns an Azure pipeline over the server's client.
func azurePipeline(s *testServer) runtime.Pipeline {
	return runtime.NewPipeline("interop", "v0.0.0", runtime.PipelineOptions{}, &policy.ClientOptions{
		Transport: s.Client(),
	})
}

// pollUntilDone polls as a user would, within a bound for the test.
func pollUntilDone(t *testing.T, p *runtime.Poller[echo]) (echo, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	return p.PollUntilDone(ctx, &runtime.PollUntilDoneOptions{Frequency: 50 * time.Millisecond})
}

func TestAzurePollerSuccessReturnsTheResult(t *testing.T) {
	s := newServer(t, azureOptions, true)
	p, err := azureSubmit(t, s, azurePipeline(s), "hello")
	require.NoError(t, err)
	got, err := pollUntilDone(t, p)
	require.NoError(t, err)
	assert.Equal(t, echo{Echo: "hello"}, got)
}

func TestAzurePollerPermanentFailureIsAResponseError(t *testing.T) {
	s := newServer(t, azureOptions, true)
	p, err := azureSubmit(t, s, azurePipeline(s), "invalid")
	require.NoError(t, err)
	got, err := pollUntilDone(t, p)
	var re *azcore.ResponseError
	require.ErrorAs(t, err, &re, "got %+v", got)
	assert.Equal(t, http.StatusUnprocessableEntity, re.StatusCode)
	assert.Contains(t, err.Error(), "the input is invalid", "the problem document is the error's body")
}

func TestAzurePollerRunningIsNotDoneAndResumes(t *testing.T) {
	s := newServer(t, azureOptions, true)
	pl := azurePipeline(s)
	p, err := azureSubmit(t, s, pl, "block")
	require.NoError(t, err)
	_, err = p.Poll(t.Context())
	require.NoError(t, err)
	require.False(t, p.Done(), "a running request is not done")
	_, err = p.Result(t.Context())
	require.Error(t, err, "no result while running")

	token, err := p.ResumeToken()
	require.NoError(t, err)
	resumed, err := runtime.NewPollerFromResumeToken[echo](token, pl, nil)
	require.NoError(t, err)
	_, err = resumed.Poll(t.Context())
	require.NoError(t, err)
	require.False(t, resumed.Done())

	close(s.release)
	got, err := pollUntilDone(t, resumed)
	require.NoError(t, err)
	assert.Equal(t, echo{Echo: "block"}, got)
}

// Without PublicURL the handler writes relative URLs, which the SDK
// refuses: PublicURL is what makes it usable.
func TestAzurePollerNeedsPublicURL(t *testing.T) {
	s := newServer(t, azureOptions, false)
	_, err := azureSubmit(t, s, azurePipeline(s), "hello")
	require.Error(t, err)
	assert.True(t, strings.Contains(err.Error(), "invalid polling URL /jobs/"), err.Error())
}

// In the default mode a running request's status answers 200, which the
// SDK's poller takes for the end: the mode for generic pollers is needed.
func TestAzurePollerNeedsAcceptedWhilePending(t *testing.T) {
	s := newServer(t, asyncreq.HandlerOptions{}, true)
	p, err := azureSubmit(t, s, azurePipeline(s), "block")
	require.NoError(t, err)
	got, err := pollUntilDone(t, p)
	require.NoError(t, err)
	assert.Equal(t, echo{}, got, "the status document read as the result")
	close(s.release)
}

// A transport that does not follow redirects (a client with its own
// CheckRedirect, a proxy's) still gets the result: the status URL answers
// with it rather than with a 303 to it.
func TestAzurePollerSuccessWithoutFollowingRedirects(t *testing.T) {
	s := newServer(t, azureOptions, true)
	noRedirects := *s.Client()
	noRedirects.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	pl := runtime.NewPipeline("interop", "v0.0.0", runtime.PipelineOptions{}, &policy.ClientOptions{Transport: &noRedirects})
	p, err := azureSubmit(t, s, pl, "hello")
	require.NoError(t, err)
	got, err := pollUntilDone(t, p)
	require.NoError(t, err)
	assert.Equal(t, echo{Echo: "hello"}, got)
}
