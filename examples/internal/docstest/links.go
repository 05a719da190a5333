package docstest

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"unicode"
)

// mdLink matches an inline Markdown link's target: [text](target).
var mdLink = regexp.MustCompile(`\]\(([^)\s]+)\)`)

// Anchors returns the anchors GitHub gives the headings of the Markdown
// text src: lower case, spaces as hyphens, punctuation other than hyphens
// and underscores dropped, a repeated anchor numbered (-1, -2, ...).
func Anchors(src []byte) map[string]bool {
	anchors := map[string]bool{}
	seen := map[string]int{}
	inFence := false
	for _, line := range strings.Split(string(src), "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "```") || strings.HasPrefix(trimmed, "~~~") {
			inFence = !inFence
			continue
		}
		if inFence || !strings.HasPrefix(line, "#") {
			continue
		}
		title := strings.TrimSpace(strings.TrimLeft(line, "#"))
		var b strings.Builder
		for _, r := range strings.ToLower(title) {
			switch {
			case r == ' ':
				b.WriteRune('-')
			case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
				b.WriteRune(r)
			}
		}
		a := b.String()
		if n := seen[a]; n > 0 {
			anchors[fmt.Sprintf("%s-%d", a, n)] = true
		} else {
			anchors[a] = true
		}
		seen[a]++
	}
	return anchors
}

// CheckLinks reports every relative link of the Markdown file whose
// target file does not exist, or whose #anchor names no heading of the
// Markdown file it points at. Links with a scheme (https:, mailto:) are
// not followed.
func CheckLinks(file string, src []byte) []error {
	var errs []error
	for _, m := range mdLink.FindAllSubmatch(src, -1) {
		target := string(m[1])
		if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
			continue
		}
		path, anchor, _ := strings.Cut(target, "#")
		dest := file
		if path != "" {
			dest = filepath.Join(filepath.Dir(file), path)
			if _, err := os.Stat(dest); err != nil {
				errs = append(errs, fmt.Errorf("%s: link to %s: %v", file, target, err))
				continue
			}
		}
		if anchor == "" || !strings.HasSuffix(dest, ".md") {
			continue
		}
		text, err := os.ReadFile(dest)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: link to %s: %v", file, target, err))
			continue
		}
		if !Anchors(text)[anchor] {
			errs = append(errs, fmt.Errorf("%s: link to %s: no heading with that anchor in %s", file, target, dest))
		}
	}
	return errs
}
