package main

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestPublicURLAndGenericPollersFlags(t *testing.T) {
	c, err := parseFlags(nil)
	require.NoError(t, err)
	assert.Empty(t, c.publicURL)
	assert.False(t, c.genericPollers)

	c, err = parseFlags([]string{"-backend", "memory", "-work-time", "1h", "-public-url", "https://api.example.com", "-generic-pollers"})
	require.NoError(t, err)
	assert.Equal(t, "https://api.example.com", c.publicURL)
	assert.True(t, c.genericPollers)

	a, err := newApp(t.Context(), c, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	t.Cleanup(a.close)
	for _, path := range []string{"/jobs", "/reports"} {
		w := httptest.NewRecorder()
		r := httptest.NewRequest(http.MethodPost, path, strings.NewReader("one two\n"))
		r.Header.Set("Content-Type", "text/plain")
		a.mux.ServeHTTP(w, r)
		require.Equal(t, http.StatusAccepted, w.Code, w.Body.String())
		loc := w.Header().Get("Location")
		assert.True(t, strings.HasPrefix(loc, "https://api.example.com"+path+"/"), loc)

		// Not finished: 202 for generic pollers, pointing at itself.
		w = httptest.NewRecorder()
		a.mux.ServeHTTP(w, httptest.NewRequest(http.MethodGet, strings.TrimPrefix(loc, "https://api.example.com"), nil))
		assert.Equal(t, http.StatusAccepted, w.Code, path)
		assert.Equal(t, loc, w.Header().Get("Location"))
	}

	_, err = newApp(t.Context(), config{backend: "memory", processor: "noop", concurrency: 1, workTime: time.Second, publicURL: "api.example.com"},
		slog.New(slog.DiscardHandler))
	require.ErrorContains(t, err, "PublicURL")
}
