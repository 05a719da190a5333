package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/asyncreq/asyncreq"
)

// Report is what one run came to.
type Report struct {
	Backend string
	// Kills is how long processes were killed for; Killed counts the
	// kills by role (api, worker).
	Kills  time.Duration
	Killed map[string]int
	Submit submitStats

	// Of the requests answered 202: Succeeded finished once with their own
	// result; Failed ended failed or canceled; Lost were unknown to the
	// API or unfinished when the drain gave up; Doubled had their outcome
	// recorded twice (it changed after it was first seen) or their body
	// accepted as a second request; Wrong succeeded with a result that is
	// not theirs or that no run of theirs returned.
	Succeeded, Failed, Lost, Doubled, Wrong int

	// From the run log: processor runs started and finished (returned
	// their result), and the requests started, or finished, more than
	// once. At-least-once delivery allows those: a worker killed
	// mid-run, or between its processor's return and the write of the
	// outcome, leaves the request to another run.
	RunsStarted, RunsFinished   int
	StartedTwice, FinishedTwice int
	Drain                       time.Duration // from the end of the kills until every request was final
	Problems                    []string      // the first few failures, one line each
	problemCount                int
}

// OK reports whether every request answered 202 finished exactly once
// with its own result.
func (r *Report) OK() bool {
	return r.Submit.accepted > 0 && r.Succeeded == r.Submit.accepted &&
		r.Failed+r.Lost+r.Doubled+r.Wrong == 0
}

func (r *Report) problem(format string, args ...any) {
	r.problemCount++
	if len(r.Problems) < 20 {
		r.Problems = append(r.Problems, fmt.Sprintf(format, args...))
	}
}

// String is the report as a few lines of text.
func (r *Report) String() string {
	var b strings.Builder
	s := r.Submit
	fmt.Fprintf(&b, "backend %s: %v of kills, processes killed: %d (api %d, worker %d)\n",
		r.Backend, r.Kills, r.Killed["api"]+r.Killed["worker"], r.Killed["api"], r.Killed["worker"])
	fmt.Fprintf(&b, "  submits: %d requests, %d POSTs (%d network errors, %d 5xx, %d 409), %d given up unanswered, %d rejected\n",
		s.submitted, s.sent, s.netErrors, s.serverErrs, s.conflicts, s.unanswered, s.rejected)
	fmt.Fprintf(&b, "  accepted %d: succeeded %d, failed %d, lost %d, doubled %d, wrong %d\n",
		s.accepted, r.Succeeded, r.Failed, r.Lost, r.Doubled, r.Wrong)
	fmt.Fprintf(&b, "  runs started %d, finished %d; requests started more than once %d, finished more than once %d; drain %v\n",
		r.RunsStarted, r.RunsFinished, r.StartedTwice, r.FinishedTwice, r.Drain.Round(time.Millisecond))
	for _, p := range r.Problems {
		fmt.Fprintf(&b, "  FAIL %s\n", p)
	}
	if n := r.problemCount - len(r.Problems); n > 0 {
		fmt.Fprintf(&b, "  ... and %d more\n", n)
	}
	return b.String()
}

// each calls f for every request, from a few goroutines at once.
func each(reqs []*request, f func(*request)) {
	next := make(chan *request)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for r := range next {
				f(r)
			}
		})
	}
	for _, r := range reqs {
		next <- r
	}
	close(next)
	wg.Wait()
}

// drain waits until every request has been seen final, noting the first
// sighting of each, or until ctx ends. It returns how many are left.
func drain(ctx context.Context, a *api, reqs []*request) int {
	var pending []*request
	for _, r := range reqs {
		if r.seen == nil {
			pending = append(pending, r)
		}
	}
	for len(pending) > 0 && ctx.Err() == nil {
		each(pending, func(r *request) {
			if s, err := a.look(ctx, r.id, 0); err == nil && s.state.Final() {
				r.seen = s
			}
		})
		left := pending[:0]
		for _, r := range pending {
			if r.seen == nil {
				left = append(left, r)
			}
		}
		pending = left
		if len(pending) > 0 {
			pause(ctx, 100*time.Millisecond)
		}
	}
	return len(pending)
}

// runs is what the run log says about one request.
type runs struct {
	started int
	done    map[string]bool // the runs that returned a result
}

// readRunLog reads the log the workers append to (see -runlog of
// examples/distributed): the runs of each request id, and the ids whose
// body had each hash.
func readRunLog(path string) (map[string]*runs, map[string]map[string]bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	return parseRunLog(f)
}

func parseRunLog(rd io.Reader) (map[string]*runs, map[string]map[string]bool, error) {
	byID := map[string]*runs{}
	idsBySum := map[string]map[string]bool{}
	sc := bufio.NewScanner(rd)
	for n := 1; sc.Scan(); n++ {
		f := strings.Fields(sc.Text())
		if len(f) != 4 || (f[0] != "start" && f[0] != "done") {
			return nil, nil, fmt.Errorf("run log line %d: %q", n, sc.Text())
		}
		run, id, sum := f[1], f[2], f[3]
		r := byID[id]
		if r == nil {
			r = &runs{done: map[string]bool{}}
			byID[id] = r
		}
		if f[0] == "start" {
			r.started++
		} else {
			r.done[run] = true
		}
		if idsBySum[sum] == nil {
			idsBySum[sum] = map[string]bool{}
		}
		idsBySum[sum][id] = true
	}
	return byID, idsBySum, sc.Err()
}

// verify reads every request again and checks it against its first
// sighting and the run log, filling the request counts of rep.
func verify(ctx context.Context, a *api, reqs []*request, runLog string, rep *Report) error {
	byID, idsBySum, err := readRunLog(runLog)
	if err != nil {
		return err
	}
	for _, r := range byID {
		rep.RunsStarted += r.started
		rep.RunsFinished += len(r.done)
		if r.started > 1 {
			rep.StartedTwice++
		}
		if len(r.done) > 1 {
			rep.FinishedTwice++
		}
	}
	last := make([]*sighting, len(reqs))
	index := make(map[*request]int, len(reqs))
	for i, r := range reqs {
		index[r] = i
	}
	var mu sync.Mutex
	var lookErr error
	each(reqs, func(r *request) {
		s, err := a.look(ctx, r.id, 0)
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			lookErr = err
			return
		}
		last[index[r]] = s
	})
	if lookErr != nil {
		return lookErr
	}
	seenIDs := make(map[string]bool, len(reqs))
	for i, r := range reqs {
		s := last[i]
		if seenIDs[r.id] {
			rep.Doubled++
			rep.problem("%s: answered 202 for two different requests", r.id)
			continue
		}
		seenIDs[r.id] = true
		if others := len(idsBySum[r.sum]); others > 1 {
			rep.Doubled++
			rep.problem("%s: its body was run as %d requests", r.id, others)
			continue
		}
		switch {
		case s.state == "":
			rep.Lost++
			rep.problem("%s: accepted, then unknown to the API", r.id)
			continue
		case !s.state.Final():
			rep.Lost++
			rep.problem("%s: still %s when the drain gave up", r.id, s.state)
			continue
		case s.state != asyncreq.StateSucceeded:
			rep.Failed++
			rep.problem("%s: %s", r.id, s.state)
			continue
		}
		if r.seen != nil && (r.seen.state != s.state || !r.seen.updated.Equal(s.updated) || r.seen.run != s.run) {
			rep.Doubled++
			rep.problem("%s: outcome recorded again: first %s at %v by run %s, then at %v by run %s",
				r.id, r.seen.state, r.seen.updated, r.seen.run, s.updated, s.run)
			continue
		}
		ran := byID[r.id]
		switch {
		case s.result != r.sum:
			rep.Wrong++
			rep.problem("%s: result %q, want %q", r.id, s.result, r.sum)
		case ran == nil || !ran.done[s.run]:
			rep.Wrong++
			rep.problem("%s: result from run %q, which no run of it returned", r.id, s.run)
		default:
			rep.Succeeded++
		}
	}
	return nil
}
