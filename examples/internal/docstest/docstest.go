// Package docstest compiles the Go code blocks of the repository's
// Markdown documentation (README.md and docs/*.md), so that a renamed or
// removed API breaks the test instead of the reader.
//
// The rule, also written in CONTRIBUTING.md: every block fenced with
// ```go is a complete, gofmt-formatted Go source file, with its package
// clause and imports. A block whose package name ends in _test is written
// as a test file (a conformance test, an example); any other block as a
// plain file; a package main must declare func main. Each block is its own
// package, type-checked and vetted with go vet inside the examples module
// (or the interop module, for a block that imports what only it requires). Code that is not meant to
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
	"strconv"
	"strings"

	"golang.org/x/mod/modfile"
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

// Check writes every block as a package of its own in a new directory at
// the root of one of modules (the directories of Go modules of the
// workspace), then runs go vet over them, which type-checks them as the
// compiler would. A block goes to the first module that requires every
// third-party module it imports (the workspace's own modules are always
// there); one that none requires is an error. Errors point at the Markdown
// lines, through //line directives. The directories are removed
// afterwards; their names start with an underscore so that ./... patterns
// never see them, even if a crash leaves one behind.
func Check(modules []string, blocks []Block) error {
	if len(blocks) == 0 {
		return nil
	}
	requires := make([][]string, len(modules))
	for i, m := range modules {
		data, err := os.ReadFile(filepath.Join(m, "go.mod"))
		if err != nil {
			return err
		}
		f, err := modfile.ParseLax("go.mod", data, nil)
		if err != nil {
			return fmt.Errorf("%s: %w", m, err)
		}
		for _, r := range f.Require {
			requires[i] = append(requires[i], r.Mod.Path)
		}
	}
	var errs []error
	pkgs := make([][]string, len(modules)) // per module, its blocks' directories
	tmps := make([]string, len(modules))
	defer func() {
		for _, t := range tmps {
			if t != "" {
				os.RemoveAll(t)
			}
		}
	}()
	for i, b := range blocks {
		name, imports, err := parseBlock(b)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if formatted, err := format.Source(b.Code); err == nil && !bytes.Equal(formatted, b.Code) {
			errs = append(errs, fmt.Errorf("%s: the block is not gofmt-formatted", b))
		}
		m := moduleFor(imports, requires)
		if m < 0 {
			errs = append(errs, fmt.Errorf("%s: no module of %v requires every module the block imports (%v)", b, modules, imports))
			continue
		}
		if tmps[m] == "" {
			if tmps[m], err = os.MkdirTemp(modules[m], "_snippets"); err != nil {
				return err
			}
		}
		file := "snippet.go"
		if strings.HasSuffix(name, "_test") {
			file = "snippet_test.go"
		}
		pkg := filepath.Join(tmps[m], fmt.Sprintf("b%03d", i))
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
		pkgs[m] = append(pkgs[m], "./"+filepath.Base(pkg))
	}
	// go vet type-checks every file, test files included, as the compiler
	// would, and vets them.
	for m := range modules {
		if len(pkgs[m]) == 0 {
			continue
		}
		cmd := exec.Command("go", append([]string{"vet"}, pkgs[m]...)...)
		cmd.Dir = tmps[m]
		if out, err := cmd.CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("go vet of the code blocks in %s: %v\n%s", modules[m], err, out))
		}
	}
	return errors.Join(errs...)
}

// project is the module path prefix of the workspace's own modules, which
// every module of the workspace can import.
const project = "github.com/asyncreq/asyncreq"

// moduleFor returns the index of the first module whose requirements
// cover every third-party import, or -1.
func moduleFor(imports []string, requires [][]string) int {
next:
	for i, reqs := range requires {
		for _, imp := range imports {
			first, _, _ := strings.Cut(imp, "/")
			if !strings.Contains(first, ".") || imp == project || strings.HasPrefix(imp, project+"/") {
				continue // the standard library, or the workspace
			}
			found := false
			for _, r := range reqs {
				if imp == r || strings.HasPrefix(imp, r+"/") {
					found = true
					break
				}
			}
			if !found {
				continue next
			}
		}
		return i
	}
	return -1
}

// parseBlock parses b's package clause and imports: a block without a
// package clause is not a complete file. A package main must declare func
// main, which go vet does not check.
func parseBlock(b Block) (name string, imports []string, err error) {
	f, err := parser.ParseFile(token.NewFileSet(), b.String(), b.Code, parser.ImportsOnly)
	if err != nil {
		if f == nil || f.Name == nil || f.Name.Name == "" || f.Package == token.NoPos {
			return "", nil, fmt.Errorf("%s: a ```go block must be a complete Go file starting with its package clause: %v", b, err)
		}
		return f.Name.Name, nil, nil // go vet reports the syntax error at its line
	}
	for _, imp := range f.Imports {
		path, err := strconv.Unquote(imp.Path.Value)
		if err == nil {
			imports = append(imports, path)
		}
	}
	if f.Name.Name != "main" {
		return f.Name.Name, imports, nil
	}
	full, err := parser.ParseFile(token.NewFileSet(), b.String(), b.Code, parser.SkipObjectResolution)
	if err != nil {
		return "main", imports, nil // go vet reports the syntax error at its line
	}
	for _, d := range full.Decls {
		if fn, ok := d.(*ast.FuncDecl); ok && fn.Recv == nil && fn.Name.Name == "main" {
			return "main", imports, nil
		}
	}
	return "", nil, fmt.Errorf("%s: a block in package main must declare func main", b)
}
