package admin

import (
	"fmt"
	"html"
	"html/template"
	"math"
	"strconv"
	"strings"
	"time"
)

// This file draws the dashboard's charts: small SVG line charts, written
// on the server from a queue's samples, with no script and no inline
// style (the stylesheet colours them by class).

// chart is one line chart of a queue's samples.
type chart struct {
	title  string
	unit   string
	points []point
}

type point struct {
	at time.Time
	v  float64
}

// charts returns the throughput and latency charts of samples: finished
// requests per second between consecutive samples, and the oldest pending
// entry's age at each. A figure the backend cannot tell has no points.
func charts(samples []sample) []chart {
	tput := chart{title: "Finished per second", unit: "/s"}
	lat := chart{title: "Oldest pending age", unit: "s"}
	for i, s := range samples {
		if i > 0 {
			if v, ok := rate(samples[i-1], s); ok {
				tput.points = append(tput.points, point{s.at, v})
			}
		}
		if s.oldest >= 0 {
			lat.points = append(lat.points, point{s.at, s.oldest})
		}
	}
	return []chart{tput, lat}
}

// The size of a chart, in SVG user units.
const (
	chartW, chartH = 320, 96
	padL, padR     = 44, 6
	padT, padB     = 16, 16
)

// svg renders c. Only numbers and the escaped title go into it.
func (c chart) svg() template.HTML {
	var b strings.Builder
	title := html.EscapeString(c.title)
	fmt.Fprintf(&b, `<svg class="chart" viewBox="0 0 %d %d" role="img" aria-label="%s" xmlns="http://www.w3.org/2000/svg">`, chartW, chartH, title)
	fmt.Fprintf(&b, `<title>%s</title>`, title)
	fmt.Fprintf(&b, `<text class="chart-title" x="%d" y="11">%s</text>`, padL, title)
	x0, x1, y0, y1 := padL, chartW-padR, chartH-padB, padT
	fmt.Fprintf(&b, `<line class="chart-axis" x1="%d" y1="%d" x2="%d" y2="%d"/>`, x0, y0, x1, y0)
	fmt.Fprintf(&b, `<line class="chart-axis" x1="%d" y1="%d" x2="%d" y2="%d"/>`, x0, y0, x0, y1)
	if len(c.points) == 0 {
		fmt.Fprintf(&b, `<text class="chart-empty" x="%d" y="%d">no samples yet</text></svg>`, x0+8, (y0+y1)/2+4)
		return template.HTML(b.String())
	}
	top := 0.0
	for _, p := range c.points {
		top = math.Max(top, p.v)
	}
	top = niceCeil(top)
	first, last := c.points[0].at, c.points[len(c.points)-1].at
	span := last.Sub(first).Seconds()
	fmt.Fprintf(&b, `<text class="chart-label" x="%d" y="%d" text-anchor="end">%s%s</text>`, x0-4, y1+4, formatNum(top), html.EscapeString(c.unit))
	fmt.Fprintf(&b, `<text class="chart-label" x="%d" y="%d" text-anchor="end">0</text>`, x0-4, y0)
	fmt.Fprintf(&b, `<text class="chart-label" x="%d" y="%d">%s ago</text>`, x0, chartH-3, formatSpan(time.Since(first)))
	fmt.Fprintf(&b, `<text class="chart-label" x="%d" y="%d" text-anchor="end">%s</text>`, x1, chartH-3, last.UTC().Format("15:04:05")+" UTC")
	b.WriteString(`<polyline class="chart-line" points="`)
	for i, p := range c.points {
		x := float64(x0)
		if span > 0 {
			x += p.at.Sub(first).Seconds() / span * float64(x1-x0)
		}
		y := float64(y0)
		if top > 0 {
			y -= p.v / top * float64(y0-y1)
		}
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%.1f,%.1f", x, y)
	}
	b.WriteString(`"/></svg>`)
	return template.HTML(b.String())
}

// niceCeil rounds v up to 1, 2 or 5 times a power of ten (1 for 0).
func niceCeil(v float64) float64 {
	if v <= 0 || math.IsNaN(v) || math.IsInf(v, 0) {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if v <= m*p {
			return m * p
		}
	}
	return 10 * p
}

// formatNum writes a chart label compactly.
func formatNum(v float64) string {
	if v >= 1 || v == 0 {
		return strconv.FormatFloat(v, 'f', -1, 64)
	}
	return strconv.FormatFloat(v, 'g', 2, 64)
}

// formatSpan writes a duration for a person: to the millisecond below a
// second, to the tenth of a second below ten, to the second above.
func formatSpan(d time.Duration) string {
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < 10*time.Second:
		return d.Round(100 * time.Millisecond).String()
	}
	d = d.Round(time.Second)
	switch {
	case d < time.Minute:
		return strconv.Itoa(int(d.Seconds())) + "s"
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return strconv.Itoa(int(d.Hours()/24)) + "d"
}
