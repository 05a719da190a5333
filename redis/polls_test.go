package redis_test

import (
	"context"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/asyncreq/asyncreq"
	"github.com/asyncreq/asyncreq/redis"
)

// subscribed starts b's subscription to its records' changes (its first
// Get does) and waits until Redis has confirmed it; it returns how many
// times it was confirmed.
func subscribed(t *testing.T, b *redis.Backend) int {
	t.Helper()
	_, _ = b.Get(t.Context(), asyncreq.NewID())
	var n int
	require.Eventually(t, func() bool {
		var up bool
		up, n = redis.PollSubscriptions(b)
		return up
	}, 5*time.Second, time.Millisecond, "the subscription to the records' changes")
	return n
}

// claim claims the record id for token.
func claim(t *testing.T, b *redis.Backend, id, token string) {
	t.Helper()
	_, err := b.Update(t.Context(), id, func(r *asyncreq.Record) error { return r.Claim(token, 3, time.Now()) })
	require.NoError(t, err)
}

// TestPollCacheAnswersWithoutRoundTrip: a Get of a record that this Backend
// just wrote (a worker's claim, its outcome) or read costs no round trip to
// Redis, and answers what was written; with PollCacheAge negative, every
// Get reads Redis.
func TestPollCacheAnswersWithoutRoundTrip(t *testing.T) {
	ctx := t.Context()
	c := newClient(t)
	prefix := newPrefix(t, c)
	b, err := redis.New(ctx, c, &redis.Options{Prefix: prefix})
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Close() })
	reader, _ := newBackend(t, &redis.Options{Prefix: prefix, PollCacheAge: -1})
	subscribed(t, b)
	rt := new(roundTrips)
	c.AddHook(rt)

	// get reads id through b, which must cost no round trip, and checks
	// that it answers what a read of Redis gives.
	get := func(id, after string) *asyncreq.Record {
		t.Helper()
		n := rt.n.Load()
		got, err := b.Get(ctx, id)
		require.NoError(t, err)
		assert.Zero(t, rt.n.Load()-n, "round trips of a Get after the "+after)
		want, err := reader.Get(ctx, id)
		require.NoError(t, err)
		assert.Equal(t, want, got, "the cached record after the "+after)
		return got
	}

	rec, err := b.Accept(ctx, testRecord("", ""))
	require.NoError(t, err)
	require.Nil(t, rec)
	leases, err := b.DequeueBatch(ctx, 1, time.Minute)
	require.NoError(t, err)
	require.Len(t, leases, 1)
	id := leases[0].ID
	got := get(id, "accept")
	assert.Equal(t, asyncreq.StatePending, got.State)

	claim(t, b, id, "token")
	got = get(id, "claim")
	assert.Equal(t, asyncreq.StateRunning, got.State)

	_, err = b.Complete(ctx, leases[0], func(r *asyncreq.Record) error {
		return r.Succeed("token", &asyncreq.Result{StatusCode: 200, Body: []byte("done")}, time.Now())
	})
	require.NoError(t, err)
	for range 3 {
		got = get(id, "outcome")
		assert.Equal(t, asyncreq.StateSucceeded, got.State)
		assert.Equal(t, "done", string(got.Result.Body))
	}
	got.Result.Body[0] = 'X' // a copy: the next Get answers the original
	got = get(id, "outcome")
	assert.Equal(t, "done", string(got.Result.Body))

	off, offClient := newBackend(t, &redis.Options{PollCacheAge: -1})
	offRT := new(roundTrips)
	offClient.AddHook(offRT)
	rec = testRecord("", "")
	_, err = off.Create(ctx, rec)
	require.NoError(t, err)
	claim(t, off, rec.ID, "token")
	n := offRT.n.Load()
	for range 3 {
		got, err := off.Get(ctx, rec.ID)
		require.NoError(t, err)
		assert.Equal(t, asyncreq.StateRunning, got.State)
	}
	assert.Equal(t, int64(3), offRT.n.Load()-n, "round trips of three Gets with the cache off")
	up, _ := redis.PollSubscriptions(off)
	assert.False(t, up, "no subscription with the cache off")
}

// TestPollCacheSeesOtherBackendsChanges: a Backend that caches a record
// for an hour still sees at once another Backend's claim, outcome and
// delete of it (another process, as far as Redis can tell), also when its
// key prefix holds characters that a PSUBSCRIBE pattern gives a meaning.
func TestPollCacheSeesOtherBackendsChanges(t *testing.T) {
	for _, name := range []string{"plain", "glob"} {
		t.Run(name, func(t *testing.T) {
			ctx := t.Context()
			c := newClient(t)
			prefix := newPrefix(t, c)
			if name == "glob" {
				prefix += `a*b?[c]\d^:`
			}
			api, _ := newBackend(t, &redis.Options{Prefix: prefix, PollCacheAge: time.Hour})
			worker, _ := newBackend(t, &redis.Options{Prefix: prefix})
			subscribed(t, api)

			rec := testRecord("", "")
			_, err := api.Create(ctx, rec)
			require.NoError(t, err)
			got, err := api.Get(ctx, rec.ID)
			require.NoError(t, err)
			require.Equal(t, asyncreq.StatePending, got.State)

			state := func() string {
				got, err := api.Get(ctx, rec.ID)
				if err != nil {
					return err.Error()
				}
				return string(got.State)
			}
			claim(t, worker, rec.ID, "token")
			require.Eventually(t, func() bool { return state() == "running" }, 5*time.Second, time.Millisecond, "the other Backend's claim")
			_, err = worker.Update(ctx, rec.ID, func(r *asyncreq.Record) error {
				return r.Fail("token", &asyncreq.Problem{Title: "no"}, time.Now())
			})
			require.NoError(t, err)
			require.Eventually(t, func() bool { return state() == "failed" }, 5*time.Second, time.Millisecond, "the other Backend's outcome")
			require.NoError(t, worker.Delete(ctx, rec.ID, false))
			require.Eventually(t, func() bool { return state() == asyncreq.ErrNotFound.Error() }, 5*time.Second, time.Millisecond, "the other Backend's delete")
		})
	}
}

// TestPollCacheDeleteOfItsOwn: a Backend's own delete of a record it has
// cached is seen by its next Get, although it ignores the message that
// its own delete publishes.
func TestPollCacheDeleteOfItsOwn(t *testing.T) {
	b, _ := newBackend(t, &redis.Options{PollCacheAge: time.Hour})
	ctx := t.Context()
	subscribed(t, b)
	rec := testRecord("", "")
	_, err := b.Create(ctx, rec)
	require.NoError(t, err)
	claim(t, b, rec.ID, "token")
	_, err = b.Get(ctx, rec.ID)
	require.NoError(t, err)
	require.NoError(t, b.Delete(ctx, rec.ID, true))
	_, err = b.Get(ctx, rec.ID)
	var gone *asyncreq.GoneError
	require.ErrorAs(t, err, &gone)
}

// TestPollCacheDroppedWhenSubscriptionFails: when the connection of the
// subscription fails, changes announced meanwhile are lost, so the cache
// drops what it held: a change made while the connection was down is
// seen once the Backend has subscribed again, not an hour later.
func TestPollCacheDroppedWhenSubscriptionFails(t *testing.T) {
	ctx := t.Context()
	c := newClient(t)
	prefix := newPrefix(t, c)
	opt := redisOptions(t)
	opt.ClientName = "polls-" + asyncreq.NewID()[:12]
	apiClient := goredis.NewClient(opt)
	t.Cleanup(func() { _ = apiClient.Close() })
	api, err := redis.New(ctx, apiClient, &redis.Options{Prefix: prefix, PollCacheAge: time.Hour})
	require.NoError(t, err)
	t.Cleanup(func() { _ = api.Close() })
	worker, _ := newBackend(t, &redis.Options{Prefix: prefix})
	first := subscribed(t, api)

	rec := testRecord("", "")
	_, err = api.Create(ctx, rec)
	require.NoError(t, err)
	got, err := api.Get(ctx, rec.ID)
	require.NoError(t, err)
	require.Equal(t, asyncreq.StatePending, got.State)

	killSubscription(t, c, opt.ClientName)
	claim(t, worker, rec.ID, "token")
	require.Eventually(t, func() bool {
		up, n := redis.PollSubscriptions(api)
		return up && n > first
	}, 5*time.Second, time.Millisecond, "subscribed again")
	got, err = api.Get(ctx, rec.ID)
	require.NoError(t, err)
	assert.Equal(t, asyncreq.StateRunning, got.State)
}

// killSubscription closes, on the server's side, the pattern subscription
// of the client named name.
func killSubscription(t *testing.T, c *goredis.Client, name string) {
	t.Helper()
	list, err := c.ClientList(context.Background()).Result()
	require.NoError(t, err)
	killed := 0
	for _, line := range strings.Split(list, "\n") {
		var id string
		var mine, psub bool
		for _, f := range strings.Fields(line) {
			k, v, _ := strings.Cut(f, "=")
			switch {
			case k == "id":
				id = v
			case k == "name":
				mine = v == name
			case k == "psub":
				psub = v != "0"
			}
		}
		if mine && psub {
			require.NoError(t, c.Do(context.Background(), "CLIENT", "KILL", "ID", id).Err())
			killed++
		}
	}
	require.Equal(t, 1, killed, "pattern subscriptions of %s", name)
}
