package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/asyncreq/asyncreq"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// lockedBuffer is a bytes.Buffer safe for concurrent use.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

const listenSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

// postWebhook sends a webhook signed with secret to url and returns the
// answer's status code.
func postWebhook(t *testing.T, url, secret, id string, ev asyncreq.WebhookEvent) int {
	t.Helper()
	body, err := json.Marshal(ev)
	require.NoError(t, err)
	key, err := asyncreq.ParseWebhookSecret(secret)
	require.NoError(t, err)
	now := time.Now().Unix()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("webhook-id", id)
	req.Header.Set("webhook-timestamp", strconv.FormatInt(now, 10))
	req.Header.Set("webhook-signature", asyncreq.WebhookSignature(key, id, now, body))
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	_ = resp.Body.Close()
	return resp.StatusCode
}

func TestListenReceivesOneVerifiedEvent(t *testing.T) {
	for _, c := range []struct {
		typ  string
		code int
	}{{asyncreq.EventSucceeded, exitOK}, {asyncreq.EventFailed, exitFailed}} {
		t.Run(c.typ, func(t *testing.T) {
			var stdout, stderr lockedBuffer
			codec := make(chan int, 1)
			go func() {
				codec <- run(t.Context(), []string{"listen", "-listen", "127.0.0.1:0", "-webhook-secret", listenSecret, "-once"}, nil, &stdout, &stderr)
			}()
			var url string
			require.Eventually(t, func() bool {
				m := regexp.MustCompile(`http://\S+/`).FindString(stderr.String())
				url = m
				return m != ""
			}, 5*time.Second, 5*time.Millisecond)

			ev := asyncreq.WebhookEvent{Type: c.typ, Timestamp: time.Now().UTC(), Data: &asyncreq.StatusDocument{ID: "abc", Status: asyncreq.StateSucceeded}}
			assert.Equal(t, http.StatusUnauthorized, postWebhook(t, url, "whsec_c2Vjb25kLXNlY3JldC1vZi0yNC1ieXRlcyE=", "msg_x", ev),
				"a webhook signed with another secret is refused")
			assert.Equal(t, http.StatusNoContent, postWebhook(t, url, listenSecret, "msg_abc", ev))
			select {
			case code := <-codec:
				assert.Equal(t, c.code, code, stderr.String())
			case <-time.After(10 * time.Second):
				t.Fatal("listen did not exit after the event")
			}
			lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
			require.Len(t, lines, 1)
			var got asyncreq.WebhookEvent
			require.NoError(t, json.Unmarshal([]byte(lines[0]), &got))
			assert.Equal(t, c.typ, got.Type)
			assert.Equal(t, "abc", got.Data.ID)
		})
	}
}

func TestListenUsage(t *testing.T) {
	t.Setenv("ASYNCREQ_WEBHOOK_SECRET", "")
	var stdout, stderr lockedBuffer
	assert.Equal(t, exitUsage, run(context.Background(), []string{"listen"}, nil, &stdout, &stderr))
	assert.Equal(t, exitUsage, run(context.Background(), []string{"listen", "-webhook-secret", "nope"}, nil, &stdout, &stderr))
}
