// Package docstest compiles the Go code blocks of the repository's
// Markdown documentation (README.md and docs/*.md), so that a renamed or
// removed API breaks the test instead of the reader.
//
// The rule, also written in CONTRIBUTING.md: every block fenced with
// ```go is a complete, gofmt-formatted Go source file, with its package
// clause and imports. A block whose package name ends in _test is written
// as a test file (a conformance test, an example); any other block as a
// plain file; a package main must declare func main. Each block is its own
// package, type-checked and vetted with go vet inside the examples module, so it may import
// anything the examples module requires. Code that is not meant to
// compile (output, configuration, shell) takes another fence (```text,
// ```sh, ```console, ...).
package docstest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"go/ast"
	"go/format"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Block is one ```go code block of a Markdown file.
type Block struct {
	File string // the Markdown file, as given to Extract
	Line int    // line of the block's first code line, counted from 1
	Code []byte // the code, without the fences and their indentation
}

func (b Block) String() string { return fmt.Sprintf("%s:%d", b.File, b.Line) }

// Extract returns the ```go blocks of the Markdown text src, read from
// file. A fence may be indented (inside a list item): that indentation is
// removed from the block's lines. An unterminated block is an error.
func Extract(file string, src []byte) ([]Block, error) {
	var (
		blocks []Block
		cur    *Block
		indent string
		fence  string
		inText bool // inside a fenced block of another language
		n      int
	)
	sc := bufio.NewScanner(bytes.NewReader(src))
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for sc.Scan() {
		n++
		line := sc.Text()
		trimmed := strings.TrimLeft(line, " \t")
		switch {
		case cur != nil:
			if strings.TrimSpace(line) == fence {
				blocks = append(blocks, *cur)
				cur = nil
				continue
			}
			cur.Code = append(cur.Code, strings.TrimPrefix(line, indent)...)
			cur.Code = append(cur.Code, '\n')
		case inText:
			if strings.TrimSpace(line) == fence {
				inText = false
			}
		case strings.HasPrefix(trimmed, "```") || strings.HasPrefix(trimmed, "~~~"):
			indent = line[:len(line)-len(trimmed)]
			fence = trimmed[:3]
			for len(fence) < len(trimmed) && trimmed[len(fence)] == fence[0] {
				fence += string(fence[0])
			}
			info := strings.Fields(trimmed[len(fence):])
			if len(info) > 0 && info[0] == "go" {
				cur = &Block{File: file, Line: n + 1}
			} else {
				inText = true
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	if cur != nil {
		return nil, fmt.Errorf("%s: the ```go block opened before line %d is not closed", file, cur.Line)
	}
	if inText {
		return nil, fmt.Errorf("%s: a fenced block is not closed", file)
	}
	return blocks, nil
}

// Check writes every block as a package of its own in a new directory
// under dir, which must lie inside a Go module (or workspace) that provides
// the packages the blocks import, then runs go build and go vet over them.
// Errors point at the Markdown lines, through //line directives. The
// directory is removed afterwards; its name starts with an underscore so
// that ./... patterns never see it, even if a crash leaves it behind.
func Check(dir string, blocks []Block) error {
	if len(blocks) == 0 {
		return nil
	}
	var errs []error
	tmp, err := os.MkdirTemp(dir, "_snippets")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	var pkgs []string
	for i, b := range blocks {
		name, err := packageName(b)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if formatted, err := format.Source(b.Code); err == nil && !bytes.Equal(formatted, b.Code) {
			errs = append(errs, fmt.Errorf("%s: the block is not gofmt-formatted", b))
		}
		file := "snippet.go"
		if strings.HasSuffix(name, "_test") {
			file = "snippet_test.go"
		}
		pkg := filepath.Join(tmp, fmt.Sprintf("b%03d", i))
		if err := os.Mkdir(pkg, 0o755); err != nil {
			return err
		}
		abs, err := filepath.Abs(b.File)
		if err != nil {
			return err
		}
		src := append([]byte(fmt.Sprintf("//line %s:%d\n", abs, b.Line)), b.Code...)
		if err := os.WriteFile(filepath.Join(pkg, file), src, 0o644); err != nil {
			return err
		}
		pkgs = append(pkgs, "./"+filepath.Base(pkg))
	}
	// go vet type-checks every file, test files included, as the compiler
	// would, and vets them.
	if len(pkgs) > 0 {
		cmd := exec.Command("go", append([]string{"vet"}, pkgs...)...)
		cmd.Dir = tmp
		if out, err := cmd.CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("go vet of the code blocks: %v\n%s", err, out))
		}
	}
	return errors.Join(errs...)
}

// packageName parses b's package clause: a block without one is not a
// complete file. A package main must declare func main, which go vet
// does not check.
func packageName(b Block) (string, error) {
	f, err := parser.ParseFile(token.NewFileSet(), b.String(), b.Code, parser.PackageClauseOnly)
	if err != nil {
		return "", fmt.Errorf("%s: a ```go block must be a complete Go file starting with its package clause: %v", b, err)
	}
	if f.Name.Name != "main" {
		return f.Name.Name, nil
	}
	f, err = parser.ParseFile(token.NewFileSet(), b.String(), b.Code, parser.SkipObjectResolution)
	if err != nil {
		return "main", nil // go vet reports the syntax error at its line
	}
	for _, d := range f.Decls {
		if fn, ok := d.(*ast.FuncDecl); ok && fn.Recv == nil && fn.Name.Name == "main" {
			return "main", nil
		}
	}
	return "", fmt.Errorf("%s: a block in package main must declare func main", b)
}
