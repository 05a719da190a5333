package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseSample(t *testing.T) {
	name, labels, v, err := parseSample(`asyncreq_attempts_total{asyncreq_outcome="succeeded",asyncreq_queue="jo\"bs\\"} 12`)
	require.NoError(t, err)
	assert.Equal(t, "asyncreq_attempts_total", name)
	assert.Equal(t, map[string]string{"asyncreq_outcome": "succeeded", "asyncreq_queue": `jo"bs\`}, labels)
	assert.Equal(t, 12.0, v)

	_, labels, v, err = parseSample(`up 1.5e+00 1700000000000`)
	require.NoError(t, err)
	assert.Empty(t, labels)
	assert.Equal(t, 1.5, v)

	_, _, v, err = parseSample(`h_bucket{le="+Inf"} +Inf`)
	require.NoError(t, err)
	assert.True(t, math.IsInf(v, 1))

	for _, bad := range []string{`novalue`, `x{a="b"`, `x{a=b} 1`, `x{a="b"} one`, `x 1 2 3`} {
		_, _, _, err := parseSample(bad)
		assert.Error(t, err, bad)
	}
}

func TestReadScrapes(t *testing.T) {
	_, err := readScrapes(strings.NewReader("x 1\n"))
	assert.ErrorContains(t, err, "before the first")
	_, err = readScrapes(strings.NewReader("# SCRAPE 2000\nx 1\n# SCRAPE 1000\nx 2\n"))
	assert.ErrorContains(t, err, "must increase")
	_, err = readScrapes(strings.NewReader(""))
	assert.Error(t, err)
}

// scrapes returns a scrape file of a counter c (series q="a" with c, q="b"
// with twice c), a gauge g (q="a" with g, q="b" with g+1) and a histogram
// h (buckets 0.1, 1, +Inf), one scrape a second from t=1s.
func scrapes(c, g []float64, h [][3]float64) string {
	var b strings.Builder
	for i := range c {
		fmt.Fprintf(&b, "# SCRAPE %d\n", 1000*(i+1))
		fmt.Fprintf(&b, "# TYPE c counter\nc_total{q=\"a\"} %g\nc_total{q=\"b\"} %g\n", c[i], 2*c[i])
		fmt.Fprintf(&b, "g{q=\"a\"} %g\ng{q=\"b\"} %g\n", g[i], g[i]+1)
		fmt.Fprintf(&b, "h_bucket{le=\"0.1\"} %g\nh_bucket{le=\"1\"} %g\nh_bucket{le=\"+Inf\"} %g\n", h[i][0], h[i][1], h[i][2])
	}
	return b.String()
}

func TestQueries(t *testing.T) {
	d, err := readScrapes(strings.NewReader(scrapes(
		[]float64{0, 10, 20, 5, 15}, // a reset after 20
		[]float64{3, 4, 5, 6, 7},
		[][3]float64{{0, 0, 0}, {10, 10, 10}, {10, 30, 30}, {10, 30, 50}, {10, 30, 50}},
	)))
	require.NoError(t, err)
	require.Len(t, d.times, 5)

	// Over 2.5s, the window holds the scrapes of the last 2s.
	r := d.rate("c_total", []string{"q"}, 2500*time.Millisecond, nil)
	require.Len(t, r, 2)
	assert.Equal(t, "a", r[0].legend)
	assert.True(t, math.IsNaN(r[0].points[0].v), "one sample is no rate")
	assert.InDelta(t, 10, r[0].points[1].v, 1e-9) // 0 -> 10 in 1s
	assert.InDelta(t, 10, r[0].points[2].v, 1e-9) // 0 -> 20 in 2s
	assert.InDelta(t, 7.5, r[0].points[3].v, 1e-9, "10 -> 20, then a reset to 5: 15 in 2s")
	assert.InDelta(t, 7.5, r[0].points[4].v, 1e-9, "20 -> reset to 5 -> 15: 15 in 2s")
	assert.InDelta(t, 20, r[1].points[1].v, 1e-9)

	all := d.rate("c_total", nil, 2500*time.Millisecond, nil)
	require.Len(t, all, 1)
	assert.InDelta(t, 30, all[0].points[1].v, 1e-9, "the sum of both series")
	only := d.rate("c_total", nil, 2500*time.Millisecond, func(l map[string]string) bool { return l["q"] == "b" })
	assert.InDelta(t, 20, only[0].points[1].v, 1e-9)

	assert.Equal(t, 8.0, d.gauge("g", nil, nil, math.Max)[0].points[4].v)
	assert.Equal(t, 15.0, d.gauge("g", nil, nil, sum)[0].points[4].v)

	// Between scrapes 1 and 2 the histogram got 10 observations of at
	// most 0.1; between 2 and 3, 20 in (0.1, 1]; between 3 and 4, 20
	// above 1; then none.
	p50 := d.quantile(0.5, "h", 1500*time.Millisecond, nil)
	assert.Equal(t, "p50", p50.legend)
	assert.True(t, math.IsNaN(p50.points[0].v))
	assert.InDelta(t, 0.05, p50.points[1].v, 1e-9, "half way into the first bucket, from 0")
	assert.InDelta(t, 0.55, p50.points[2].v, 1e-9, "half way into (0.1, 1]")
	assert.InDelta(t, 1, p50.points[3].v, 1e-9, "in the +Inf bucket: the highest finite bound")
	assert.True(t, math.IsNaN(p50.points[4].v), "no observation: no quantile")
	assert.InDelta(t, 0.1+0.9*0.95, d.quantile(0.95, "h", 1500*time.Millisecond, nil).points[2].v, 1e-9)
}

func TestBucketQuantile(t *testing.T) {
	assert.True(t, math.IsNaN(bucketQuantile(0.5, []bucket{{1, 5}})), "no +Inf bucket")
	assert.True(t, math.IsInf(bucketQuantile(-1, nil), -1))
	assert.True(t, math.IsInf(bucketQuantile(2, nil), 1))
	// Unsorted, and a cumulative count that falls is taken as the one before.
	bs := func() []bucket { return []bucket{{math.Inf(1), 4}, {2, 3}, {1, 2}, {3, 1}} }
	assert.InDelta(t, 2, bucketQuantile(0.75, bs()), 1e-9, "rank 3 of 4: the end of (1, 2]")
	assert.InDelta(t, 3, bucketQuantile(0.875, bs()), 1e-9, "rank 3.5: in the +Inf bucket")
}

// TestPanelsFollowTheDashboard checks that every panel of the Grafana
// dashboard is drawn, in its order, with its unit.
func TestPanelsFollowTheDashboard(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "grafana-dashboard.json"))
	require.NoError(t, err)
	var dash struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	require.NoError(t, json.Unmarshal(b, &dash))
	require.Len(t, panels, len(dash.Panels))
	for i, p := range dash.Panels {
		assert.Equal(t, p.Title, panels[i].title)
		// The metric each query reads is the one the panel evaluates.
		for _, tg := range p.Targets {
			m := regexp.MustCompile(`(asyncreq_[a-z_]+)\{`).FindStringSubmatch(tg.Expr)
			require.NotNil(t, m, tg.Expr)
			assert.Contains(t, panelMetrics(t, panels[i]), strings.TrimSuffix(m[1], "_bucket"), p.Title)
		}
	}
}

// panelMetrics returns the metrics p's queries read, by evaluating them
// over a scrape file that has one series of each metric of the dashboard.
func panelMetrics(t *testing.T, p panel) []string {
	t.Helper()
	var file strings.Builder
	for i := 1; i <= 2; i++ {
		fmt.Fprintf(&file, "# SCRAPE %d\n", 1000*i)
		for _, m := range []string{"asyncreq_requests_accepted_total", "asyncreq_requests_rejected_total",
			"asyncreq_attempts_total", "asyncreq_queue_depth", "asyncreq_queue_oldest_age_seconds"} {
			fmt.Fprintf(&file, "%s{m=%q} %d\n", m, m, i)
		}
		for _, m := range []string{"asyncreq_attempt_duration_seconds", "asyncreq_queue_wait_seconds", "asyncreq_request_duration_seconds"} {
			fmt.Fprintf(&file, "%s_bucket{m=%q,le=\"1\"} %d\n%s_bucket{m=%q,le=\"+Inf\"} %d\n", m, m, i, m, m, i)
		}
	}
	var read []string
	for _, m := range []string{"asyncreq_requests_accepted_total", "asyncreq_requests_rejected_total", "asyncreq_attempts_total",
		"asyncreq_queue_depth", "asyncreq_queue_oldest_age_seconds",
		"asyncreq_attempt_duration_seconds", "asyncreq_queue_wait_seconds", "asyncreq_request_duration_seconds"} {
		// Keep only metric m: a panel that reads it has a value.
		var only strings.Builder
		for _, line := range strings.Split(file.String(), "\n") {
			if strings.HasPrefix(line, "#") || strings.HasPrefix(line, m) {
				only.WriteString(line + "\n")
			}
		}
		d, err := readScrapes(strings.NewReader(only.String()))
		require.NoError(t, err)
		for _, c := range p.eval(d, 5*time.Second) {
			if !math.IsNaN(c.points[1].v) {
				read = append(read, m)
				break
			}
		}
	}
	return read
}

func TestRender(t *testing.T) {
	d, err := readScrapes(strings.NewReader(scrapes(
		[]float64{0, 10, 20, 5, 15}, []float64{3, 4, 5, 6, 7},
		[][3]float64{{0, 0, 0}, {10, 10, 10}, {10, 30, 30}, {10, 30, 50}, {10, 30, 50}})))
	require.NoError(t, err)
	ps := []panel{
		{"rate", "1/s", func(d *db, w time.Duration) []curve { return d.rate("c_total", []string{"q"}, w, nil) }},
		{"quantiles", "s", func(d *db, w time.Duration) []curve { return []curve{d.quantile(0.5, "h", w, nil)} }},
		{"nothing", "s", func(d *db, w time.Duration) []curve { return nil }},
	}
	var out bytes.Buffer
	require.NoError(t, render(&out, d, ps, renderOptions{title: "test", window: 2 * time.Second, panelWidth: 300, panelHeight: 200, headerHeight: 20}))
	img, err := png.Decode(&out)
	require.NoError(t, err)
	// Two panels a row, 96 dpi: points are 4/3 pixels.
	assert.Equal(t, 800, img.Bounds().Dx())
	assert.Equal(t, 560, img.Bounds().Dy())
}

func TestRunRefusesNothingToDo(t *testing.T) {
	assert.Error(t, run(nil))
	assert.Error(t, run([]string{"-in", "x", "-window", "0"}))
	assert.Error(t, run([]string{"-in", filepath.Join(t.TempDir(), "missing")}))
}
