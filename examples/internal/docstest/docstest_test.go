package docstest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// repoRoot is the directory holding go.work, above this package.
func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs(".")
	require.NoError(t, err)
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		require.NotEqual(t, dir, parent, "no go.work above the docstest package")
		dir = parent
	}
}

// modules are the modules the code blocks are built in: examples, and
// interop for the blocks that use what only it requires (the Azure SDK).
func modules(t *testing.T) []string {
	root := repoRoot(t)
	return []string{filepath.Join(root, "examples"), filepath.Join(root, "interop")}
}

// docFiles are README.md and every docs/*.md of the repository.
func docFiles(t *testing.T) []string {
	t.Helper()
	root := repoRoot(t)
	files, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	require.NoError(t, err)
	return append([]string{filepath.Join(root, "README.md")}, files...)
}

// TestDocsCompile builds and vets every ```go block of README.md and
// docs/*.md.
func TestDocsCompile(t *testing.T) {
	var all []Block
	for _, f := range docFiles(t) {
		src, err := os.ReadFile(f)
		require.NoError(t, err)
		blocks, err := Extract(f, src)
		require.NoError(t, err)
		all = append(all, blocks...)
	}
	require.NotEmpty(t, all, "no ```go blocks found: is the extraction broken?")
	require.NoError(t, Check(modules(t), all))
	t.Logf("%d code blocks compiled", len(all))
}

// writeDoc writes a Markdown file with the given text to a temporary
// directory and returns its blocks.
func writeDoc(t *testing.T, text string) []Block {
	t.Helper()
	path := filepath.Join(t.TempDir(), "broken.md")
	require.NoError(t, os.WriteFile(path, []byte(text), 0o644))
	blocks, err := Extract(path, []byte(text))
	require.NoError(t, err)
	return blocks
}

func TestCheckFailsOnUndefinedName(t *testing.T) {
	blocks := writeDoc(t, "# Doc\n\nText.\n\n```go\npackage main\n\nimport \"github.com/asyncreq/asyncreq\"\n\nfunc main() {\n\t_ = asyncreq.NoSuchFunction()\n}\n```\n")
	require.Len(t, blocks, 1)
	err := Check(modules(t), blocks)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "NoSuchFunction")
	assert.Contains(t, err.Error(), "broken.md:11", "the error points at the Markdown line")
}

func TestCheckFailsOnWrongArguments(t *testing.T) {
	blocks := writeDoc(t, "```go\npackage main\n\nimport \"github.com/asyncreq/asyncreq/memory\"\n\nfunc main() {\n\tb := memory.New(nil, nil, nil)\n\tdefer b.Close()\n}\n```\n")
	require.Error(t, Check(modules(t), blocks))
}

func TestCheckFailsOnAFragment(t *testing.T) {
	blocks := writeDoc(t, "```go\nfmt.Println(\"no package clause\")\n```\n")
	err := Check(modules(t), blocks)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "complete Go file")
}

func TestCheckFailsOnMainWithoutMain(t *testing.T) {
	blocks := writeDoc(t, "```go\npackage main\n\nfunc notMain() {}\n```\n")
	require.Error(t, Check(modules(t), blocks))
}

func TestCheckFailsOnUnformattedCode(t *testing.T) {
	blocks := writeDoc(t, "```go\npackage main\n\nfunc main() {\n    println(1)\n}\n```\n")
	err := Check(modules(t), blocks)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "gofmt")
}

func TestCheckFailsOnAVetFinding(t *testing.T) {
	blocks := writeDoc(t, "```go\npackage main\n\nimport \"fmt\"\n\nfunc main() {\n\tfmt.Printf(\"%d\\n\", \"text\")\n}\n```\n")
	err := Check(modules(t), blocks)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "go vet")
}

func TestCheckBuildsTestFiles(t *testing.T) {
	good := writeDoc(t, "```go\npackage mine_test\n\nimport \"testing\"\n\nfunc TestX(t *testing.T) {}\n```\n")
	require.NoError(t, Check(modules(t), good))
	bad := writeDoc(t, "```go\npackage mine_test\n\nimport \"testing\"\n\nfunc TestX(t *testing.T) { t.NoSuchMethod() }\n```\n")
	require.Error(t, Check(modules(t), bad))
}

func TestCheckLeavesNothingBehind(t *testing.T) {
	blocks := writeDoc(t, "```go\npackage main\n\nfunc main() {}\n```\n")
	require.NoError(t, Check(modules(t), blocks))
	for _, m := range modules(t) {
		left, err := filepath.Glob(filepath.Join(m, "_snippets*"))
		require.NoError(t, err)
		assert.Empty(t, left)
	}
}

func TestExtract(t *testing.T) {
	src := "intro\n\n```sh\ngo test ./...\n```\n\n- item\n\n  ```go\n  package a\n\n  func F() {}\n  ```\n\n````go\npackage b\n```\n````\n~~~text\n```go\n~~~\n"
	blocks, err := Extract("x.md", []byte(src))
	require.NoError(t, err)
	require.Len(t, blocks, 2)
	assert.Equal(t, 10, blocks[0].Line)
	assert.Equal(t, "package a\n\nfunc F() {}\n", string(blocks[0].Code))
	assert.Equal(t, 16, blocks[1].Line)
	assert.Equal(t, "package b\n```\n", string(blocks[1].Code))

	_, err = Extract("x.md", []byte("```go\npackage a\n"))
	assert.ErrorContains(t, err, "not closed")
	assert.True(t, strings.HasPrefix(Block{File: "x.md", Line: 3}.String(), "x.md:3"))
}

// TestDocsLinks checks every relative link of README.md, docs/*.md and the
// other Markdown files at the root: the file exists and the anchor names
// one of its headings.
func TestDocsLinks(t *testing.T) {
	root := repoRoot(t)
	files := docFiles(t)
	for _, name := range []string{"CONTRIBUTING.md", "CHANGELOG.md", "RELEASING.md"} {
		files = append(files, filepath.Join(root, name))
	}
	for _, f := range files {
		src, err := os.ReadFile(f)
		require.NoError(t, err)
		for _, err := range CheckLinks(f, src) {
			t.Error(err)
		}
	}
}

func TestCheckLinksFindsBrokenOnes(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "other.md"), []byte("# Other\n\n## NATS JetStream (`nats/`)\n\n## Setup\n\n## Setup\n"), 0o644))
	doc := filepath.Join(dir, "doc.md")
	src := []byte("# Doc\n\n[ok](other.md) [ok](other.md#nats-jetstream-nats) [ok](other.md#setup-1) [ok](#doc) [web](https://example.com/x#y)\n" +
		"[missing file](nope.md) [missing anchor](other.md#nope) [missing here](#nope)\n```sh\n# not a heading\n```\n")
	require.NoError(t, os.WriteFile(doc, src, 0o644))
	errs := CheckLinks(doc, src)
	require.Len(t, errs, 3, "%v", errs)
	assert.Contains(t, errs[0].Error(), "nope.md")
	assert.Contains(t, errs[1].Error(), "other.md#nope")
	assert.Contains(t, errs[2].Error(), "#nope")
	assert.False(t, Anchors(src)["not-a-heading"])
}

func TestCheckPicksTheModuleThatRequiresTheImports(t *testing.T) {
	azure := writeDoc(t, "```go\npackage main\n\nimport \"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime\"\n\nfunc main() { _ = runtime.NewPipeline }\n```\n")
	require.NoError(t, Check(modules(t), azure))
	chi := writeDoc(t, "```go\npackage main\n\nimport \"github.com/go-chi/chi/v5\"\n\nfunc main() { _ = chi.NewRouter() }\n```\n")
	require.NoError(t, Check(modules(t), chi))
	unknown := writeDoc(t, "```go\npackage main\n\nimport \"example.com/nobody/requires\"\n\nfunc main() { requires.X() }\n```\n")
	err := Check(modules(t), unknown)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "no module")
}
