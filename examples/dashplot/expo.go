package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// A scrape file is what the record mode writes: each scrape of /metrics,
// in the Prometheus text format, after a line "# SCRAPE <unix ms>".
const scrapeMarker = "# SCRAPE "

// sample is one value of one series at one scrape.
type sample struct {
	t time.Time
	v float64
}

// series is one metric's samples with one set of labels.
type series struct {
	name    string
	labels  map[string]string
	samples []sample
}

// db holds every series of a scrape file, by name and labels.
type db struct {
	series map[string]*series // by key
	times  []time.Time        // of every scrape, in order
}

// key returns the identity of a series: its name and sorted labels.
func key(name string, labels map[string]string) string {
	names := make([]string, 0, len(labels))
	for k := range labels {
		names = append(names, k)
	}
	slices.Sort(names)
	var b strings.Builder
	b.WriteString(name)
	for _, k := range names {
		fmt.Fprintf(&b, "\xff%s=%s", k, labels[k])
	}
	return b.String()
}

// readScrapes parses a scrape file.
func readScrapes(r io.Reader) (*db, error) {
	d := &db{series: map[string]*series{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	var now time.Time
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if ms, ok := strings.CutPrefix(text, scrapeMarker); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(ms), 10, 64)
			if err != nil {
				return nil, fmt.Errorf("line %d: bad scrape time: %w", line, err)
			}
			now = time.UnixMilli(n)
			if len(d.times) > 0 && !now.After(d.times[len(d.times)-1]) {
				return nil, fmt.Errorf("line %d: scrape times must increase", line)
			}
			d.times = append(d.times, now)
			continue
		}
		if text == "" || text[0] == '#' {
			continue
		}
		if now.IsZero() {
			return nil, fmt.Errorf("line %d: a sample before the first %q line", line, strings.TrimSpace(scrapeMarker))
		}
		name, labels, v, err := parseSample(text)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
		k := key(name, labels)
		s := d.series[k]
		if s == nil {
			s = &series{name: name, labels: labels}
			d.series[k] = s
		}
		s.samples = append(s.samples, sample{now, v})
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(d.times) == 0 {
		return nil, errors.New("no scrape in the file")
	}
	return d, nil
}

// parseSample parses one sample line of the text format:
// name{label="value",...} value [timestamp]. A timestamp is ignored: the
// scrape's time is the sample's.
func parseSample(line string) (name string, labels map[string]string, v float64, err error) {
	i := strings.IndexAny(line, "{ ")
	if i <= 0 {
		return "", nil, 0, fmt.Errorf("no value in %q", line)
	}
	name, rest := line[:i], line[i:]
	labels = map[string]string{}
	if rest[0] == '{' {
		rest = rest[1:]
		for {
			rest = strings.TrimLeft(rest, " ,")
			if strings.HasPrefix(rest, "}") {
				rest = rest[1:]
				break
			}
			eq := strings.IndexByte(rest, '=')
			if eq <= 0 || len(rest) < eq+2 || rest[eq+1] != '"' {
				return "", nil, 0, fmt.Errorf("bad labels in %q", line)
			}
			lname := strings.TrimSpace(rest[:eq])
			val, n, err := unquote(rest[eq+1:])
			if err != nil {
				return "", nil, 0, fmt.Errorf("%w in %q", err, line)
			}
			labels[lname] = val
			rest = rest[eq+1+n:]
		}
	}
	fields := strings.Fields(rest)
	if len(fields) == 0 || len(fields) > 2 {
		return "", nil, 0, fmt.Errorf("bad value in %q", line)
	}
	v, err = parseValue(fields[0])
	if err != nil {
		return "", nil, 0, fmt.Errorf("bad value in %q: %w", line, err)
	}
	return name, labels, v, nil
}

// unquote reads a quoted label value at the start of s, with the text
// format's escapes (\\, \", \n), and returns it and the bytes it took.
func unquote(s string) (string, int, error) {
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		switch c := s[i]; c {
		case '"':
			return b.String(), i + 1, nil
		case '\\':
			i++
			if i == len(s) {
				return "", 0, errors.New("unterminated label value")
			}
			switch s[i] {
			case 'n':
				b.WriteByte('\n')
			default:
				b.WriteByte(s[i])
			}
		default:
			b.WriteByte(c)
		}
	}
	return "", 0, errors.New("unterminated label value")
}

func parseValue(s string) (float64, error) {
	switch s {
	case "+Inf":
		return math.Inf(1), nil
	case "-Inf":
		return math.Inf(-1), nil
	case "NaN":
		return math.NaN(), nil
	}
	return strconv.ParseFloat(s, 64)
}
