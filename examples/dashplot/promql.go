package main

import (
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// This file is the part of PromQL the dashboard's queries use, evaluated
// at every scrape of a scrape file: rate over a window, sum and max by
// labels, and histogram_quantile.

// point is a query's value at one scrape; NaN where it has none.
type point struct {
	t time.Time
	v float64
}

// curve is one line of a panel: its legend and its points.
type curve struct {
	legend string
	points []point
}

// matcher selects series by their labels; nil selects every series.
type matcher func(labels map[string]string) bool

// rateAt returns the per-second increase of a counter's samples over the
// window (t-w, t]: the increase between the first and the last sample in
// the window, counter resets taken into account, over the time between
// them. It is PromQL's rate without the extrapolation to the window's
// edges, and false with fewer than two samples in the window.
func rateAt(samples []sample, t time.Time, w time.Duration) (float64, bool) {
	from := sort.Search(len(samples), func(i int) bool { return samples[i].t.After(t.Add(-w)) })
	to := sort.Search(len(samples), func(i int) bool { return samples[i].t.After(t) })
	if to-from < 2 {
		return 0, false
	}
	var inc float64
	for i := from + 1; i < to; i++ {
		d := samples[i].v - samples[i-1].v
		if d < 0 { // a reset: the counter started again from zero
			d = samples[i].v
		}
		inc += d
	}
	return inc / samples[to-1].t.Sub(samples[from].t).Seconds(), true
}

// valueAt returns a gauge's sample taken at t.
func valueAt(samples []sample, t time.Time) (float64, bool) {
	i := sort.Search(len(samples), func(i int) bool { return !samples[i].t.Before(t) })
	if i == len(samples) || !samples[i].t.Equal(t) {
		return 0, false
	}
	return samples[i].v, true
}

// groupKey returns the values of the labels by, joined for a legend.
func groupKey(labels map[string]string, by []string) string {
	vals := make([]string, len(by))
	for i, l := range by {
		vals[i] = labels[l]
	}
	return strings.Join(vals, " ")
}

// aggregate evaluates agg (sum or max) by the labels by of each series of
// name that m selects, taking each series' value at a scrape with value,
// at every scrape. It is `sum by (by) (rate(name[w]))` with rateAt, and
// `sum by (by) (name)` or `max by (by) (name)` with valueAt.
func (d *db) aggregate(name string, by []string, m matcher, agg func(a, b float64) float64,
	value func(s []sample, t time.Time) (float64, bool)) []curve {
	groups := map[string][]*series{}
	for _, s := range d.series {
		if s.name == name && (m == nil || m(s.labels)) {
			k := groupKey(s.labels, by)
			groups[k] = append(groups[k], s)
		}
	}
	keys := make([]string, 0, len(groups))
	for k := range groups {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var out []curve
	for _, k := range keys {
		c := curve{legend: k}
		for _, t := range d.times {
			v, any := 0.0, false
			for _, s := range groups[k] {
				if x, ok := value(s.samples, t); ok {
					if any {
						v = agg(v, x)
					} else {
						v, any = x, true
					}
				}
			}
			if !any {
				v = math.NaN()
			}
			c.points = append(c.points, point{t, v})
		}
		out = append(out, c)
	}
	return out
}

func sum(a, b float64) float64 { return a + b }

// rate returns `sum by (by) (rate(name[w]))` at every scrape.
func (d *db) rate(name string, by []string, w time.Duration, m matcher) []curve {
	return d.aggregate(name, by, m, sum, func(s []sample, t time.Time) (float64, bool) { return rateAt(s, t, w) })
}

// gauge returns `agg by (by) (name)` at every scrape.
func (d *db) gauge(name string, by []string, m matcher, agg func(a, b float64) float64) []curve {
	return d.aggregate(name, by, m, agg, valueAt)
}

// quantile returns `histogram_quantile(q, sum by (le) (rate(name_bucket[w])))`
// at every scrape.
func (d *db) quantile(q float64, name string, w time.Duration, m matcher) curve {
	byLE := d.rate(name+"_bucket", []string{"le"}, w, m)
	c := curve{legend: "p" + strconv.FormatFloat(q*100, 'f', -1, 64)}
	for i, t := range d.times {
		var bs []bucket
		for _, g := range byLE {
			le, err := parseValue(g.legend)
			if err != nil || math.IsNaN(g.points[i].v) {
				continue
			}
			bs = append(bs, bucket{le, g.points[i].v})
		}
		c.points = append(c.points, point{t, bucketQuantile(q, bs)})
	}
	return c
}

// bucket is a cumulative histogram bucket: the count (or rate) of
// observations at most upper.
type bucket struct {
	upper, count float64
}

// bucketQuantile estimates the q-quantile of cumulative buckets as
// PromQL's histogram_quantile does: by linear interpolation inside the
// bucket the rank falls in, the upper bound of the highest finite bucket
// when it falls in the +Inf bucket, and NaN without observations or
// without a +Inf bucket.
func bucketQuantile(q float64, bs []bucket) float64 {
	switch {
	case math.IsNaN(q):
		return math.NaN()
	case q < 0:
		return math.Inf(-1)
	case q > 1:
		return math.Inf(1)
	}
	slices.SortFunc(bs, func(a, b bucket) int {
		switch {
		case a.upper < b.upper:
			return -1
		case a.upper > b.upper:
			return 1
		}
		return 0
	})
	if len(bs) < 2 || !math.IsInf(bs[len(bs)-1].upper, 1) {
		return math.NaN()
	}
	// Counts that fall with the bound (a scrape between two bucket
	// updates) are taken as the largest before them.
	for i := 1; i < len(bs); i++ {
		bs[i].count = max(bs[i].count, bs[i-1].count)
	}
	total := bs[len(bs)-1].count
	if total == 0 {
		return math.NaN()
	}
	rank := q * total
	b := sort.Search(len(bs)-1, func(i int) bool { return bs[i].count >= rank })
	switch {
	case b == len(bs)-1:
		return bs[len(bs)-2].upper
	case b == 0 && bs[0].upper <= 0:
		return bs[0].upper
	}
	start, end, count := 0.0, bs[b].upper, bs[b].count
	if b > 0 {
		start = bs[b-1].upper
		count -= bs[b-1].count
		rank -= bs[b-1].count
	}
	return start + (end-start)*(rank/count)
}
