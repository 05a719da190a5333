package main

import (
	"archive/zip"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"golang.org/x/mod/module"
	modzip "golang.org/x/mod/zip"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// tree writes files (slash-separated names) into a new directory and makes
// it the working directory of the test.
func tree(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, data := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o777))
		require.NoError(t, os.WriteFile(p, []byte(data), 0o666))
	}
	t.Chdir(dir)
	return dir
}

// released is a workspace whose nested modules require the root and each
// other at v0.1.0.
func released() map[string]string {
	return map[string]string{
		"go.work": "go 1.25.0\n\nuse (\n\t.\n\t./a\n\t./cmd/b\n)\n\n" +
			"replace (\n\texample.com/p v0.1.0 => ./\n\texample.com/p/a v0.1.0 => ./a\n\texample.com/p/cmd/b v0.1.0 => ./cmd/b\n)\n",
		"go.mod": "module example.com/p\n\ngo 1.25\n",
		"a/go.mod": "module example.com/p/a\n\ngo 1.25.0\n\n" +
			"require (\n\texample.com/p v0.1.0\n\texample.com/other v1.2.3\n)\n",
		"cmd/b/go.mod": "module example.com/p/cmd/b\n\ngo 1.25.0\n\n" +
			"// b uses a.\nrequire (\n\texample.com/p v0.1.0 // indirect\n\texample.com/p/a v0.1.0\n)\n",
		"LICENSE":                "the license\n",
		"p.go":                   "package p\n",
		"a/a.go":                 "package a\n",
		"cmd/b/main.go":          "package main\n\nfunc main() {}\n",
		"testdata/x/go.mod":      "module example.com/ignored\n",
		"a/internal/x/x.go":      "package x\n",
		"a/internal/x/x_test.go": "package x\n",
	}
}

func TestCheckAcceptsReleasableModules(t *testing.T) {
	tree(t, released())
	require.NoError(t, check(""))
	require.NoError(t, check("v0.1.0"))
}

func TestCheckWantsTheReleaseVersion(t *testing.T) {
	tree(t, released())
	err := check("v0.2.0")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "a/go.mod: require example.com/p v0.1.0: the release is v0.2.0")
	assert.Contains(t, err.Error(), "cmd/b/go.mod: require example.com/p/a v0.1.0: the release is v0.2.0")

	assert.ErrorContains(t, check("v0.2"), "not a version")
}

func TestCheckReportsWhatBreaksUsers(t *testing.T) {
	files := released()
	files["a/go.mod"] = "module example.com/p/a\n\ngo 1.25.0\n\nrequire example.com/p v0.0.0\n\nreplace example.com/p => ../\n"
	files["cmd/b/go.mod"] = "module example.com/p/b\n\ngo 1.25.0\n\nrequire example.com/p/a v0.0.0-20250101000000-abcdefabcdef\n"
	files["c/go.mod"] = "module example.com/p/c\n\ngo 1.25.0\n"
	tree(t, files)
	err := check("")
	require.Error(t, err)
	for _, want := range []string{
		"c/go.mod: the module is not in go.work's use list",
		"a/go.mod: replace example.com/p => ../",
		"a/go.mod: require example.com/p v0.0.0: v0.0.0 is a placeholder",
		"cmd/b/go.mod: module example.com/p/b; a nested module's path must be the root's path and its directory (example.com/p/cmd/b)",
		"cmd/b/go.mod: require example.com/p/a v0.0.0-20250101000000-abcdefabcdef: v0.0.0-20250101000000-abcdefabcdef is a pseudo-version",
	} {
		assert.Contains(t, err.Error(), want)
	}
	assert.NotContains(t, err.Error(), "testdata", "the go command ignores testdata")
}

func TestCheckWantsTheWorkspaceToReplaceTheRequiredVersion(t *testing.T) {
	files := released()
	files["go.work"] = "go 1.25.0\n\nuse (\n\t.\n\t./a\n\t./cmd/b\n)\n\n" +
		"replace (\n\texample.com/p v0.0.9 => ./\n\texample.com/p/a v0.1.0 => ./a\n\texample.com/p/cmd/b v0.1.0 => ../elsewhere\n)\n"
	tree(t, files)
	err := check("")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "go.work: no replace example.com/p v0.1.0 => ./:")
	assert.Contains(t, err.Error(), "go.work: no replace example.com/p/cmd/b v0.1.0 => ./cmd/b:")
	assert.Contains(t, err.Error(), "go.work: replace example.com/p v0.0.9: the project's modules are required at v0.1.0")
	assert.NotContains(t, err.Error(), "example.com/p/a v0.1.0 =>")
}

func TestCheckWantsOneVersion(t *testing.T) {
	files := released()
	files["cmd/b/go.mod"] = strings.ReplaceAll(files["cmd/b/go.mod"], "example.com/p/a v0.1.0", "example.com/p/a v0.1.1")
	tree(t, files)
	assert.ErrorContains(t, check(""), "required at more than one version")
}

func TestRequireSetsTheProjectsRequirements(t *testing.T) {
	tree(t, released())
	require.NoError(t, setRequirements("v0.2.0-rc.1"))

	a, err := os.ReadFile("a/go.mod")
	require.NoError(t, err)
	assert.Equal(t, "module example.com/p/a\n\ngo 1.25.0\n\n"+
		"require (\n\texample.com/p v0.2.0-rc.1\n\texample.com/other v1.2.3\n)\n", string(a))
	b, err := os.ReadFile("cmd/b/go.mod")
	require.NoError(t, err)
	assert.Equal(t, "module example.com/p/cmd/b\n\ngo 1.25.0\n\n"+
		"// b uses a.\nrequire (\n\texample.com/p v0.2.0-rc.1 // indirect\n\texample.com/p/a v0.2.0-rc.1\n)\n", string(b))
	root, err := os.ReadFile("go.mod")
	require.NoError(t, err)
	assert.Equal(t, "module example.com/p\n\ngo 1.25\n", string(root))
	work, err := os.ReadFile("go.work")
	require.NoError(t, err)
	wantWork := "go 1.25.0\n\nuse (\n\t.\n\t./a\n\t./cmd/b\n)\n\n" +
		"// Each module's version as required by the others is this directory.\n" +
		"replace (\n\texample.com/p v0.2.0-rc.1 => ./\n\texample.com/p/a v0.2.0-rc.1 => ./a\n\texample.com/p/cmd/b v0.2.0-rc.1 => ./cmd/b\n)\n"
	assert.Equal(t, wantWork, string(work))
	require.NoError(t, check("v0.2.0-rc.1"))

	// Again: nothing changes.
	require.NoError(t, setRequirements("v0.2.0-rc.1"))
	work, err = os.ReadFile("go.work")
	require.NoError(t, err)
	assert.Equal(t, wantWork, string(work))

	assert.Error(t, setRequirements("v0.0.0"))
}

func TestPublishLaysOutAProxy(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("publish reads a git repository: git is not installed")
	}
	files := released()
	files["Upper/go.mod"] = "module example.com/p/Upper\n\ngo 1.25.0\n"
	files["Upper/u.go"] = "package upper\n"
	files[".gitattributes"] = "a/internal/x/x_test.go export-ignore\n"
	dir := tree(t, files)
	for _, args := range [][]string{
		{"init", "-q"},
		{"add", "-A"},
		{"-c", "user.name=t", "-c", "user.email=t@localhost", "commit", "-q", "-m", "c"},
	} {
		cmd := exec.Command("git", append([]string{"-C", dir}, args...)...)
		cmd.Env = append(os.Environ(), "GIT_COMMITTER_DATE=2025-03-04T05:06:07Z", "GIT_AUTHOR_DATE=2025-03-04T05:06:07Z")
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, string(out))
	}
	out := t.TempDir()
	require.NoError(t, publish(dir, "HEAD", "v0.3.0", out, []string{".", "a", "cmd/b", "Upper"}))
	require.NoError(t, publish(dir, "HEAD", "v0.2.0", out, []string{"a"}))

	names := func(mod string) []string {
		t.Helper()
		zr, err := zip.OpenReader(filepath.Join(out, mod, "@v", "v0.3.0.zip"))
		require.NoError(t, err)
		defer zr.Close()
		var names []string
		for _, f := range zr.File {
			names = append(names, f.Name)
		}
		slices.Sort(names)
		return names
	}
	// The root leaves out the nested modules' files (and testdata's go.mod
	// makes testdata/x a module of its own).
	assert.Equal(t, []string{
		"example.com/p@v0.3.0/.gitattributes",
		"example.com/p@v0.3.0/LICENSE",
		"example.com/p@v0.3.0/go.mod",
		"example.com/p@v0.3.0/go.work",
		"example.com/p@v0.3.0/p.go",
	}, names("example.com/p"))
	// A nested module gets the repository's LICENSE; export-ignore holds.
	assert.Equal(t, []string{
		"example.com/p/a@v0.3.0/LICENSE",
		"example.com/p/a@v0.3.0/a.go",
		"example.com/p/a@v0.3.0/go.mod",
		"example.com/p/a@v0.3.0/internal/x/x.go",
	}, names("example.com/p/a"))
	assert.Equal(t, []string{
		"example.com/p/cmd/b@v0.3.0/LICENSE",
		"example.com/p/cmd/b@v0.3.0/go.mod",
		"example.com/p/cmd/b@v0.3.0/main.go",
	}, names("example.com/p/cmd/b"))
	// Upper-case letters are escaped in the proxy's paths, not in the zip.
	assert.Equal(t, []string{
		"example.com/p/Upper@v0.3.0/LICENSE",
		"example.com/p/Upper@v0.3.0/go.mod",
		"example.com/p/Upper@v0.3.0/u.go",
	}, names("example.com/p/!upper"))

	for _, m := range []module.Version{
		{Path: "example.com/p", Version: "v0.3.0"},
		{Path: "example.com/p/a", Version: "v0.2.0"},
		{Path: "example.com/p/Upper", Version: "v0.3.0"},
	} {
		esc, err := module.EscapePath(m.Path)
		require.NoError(t, err)
		base := filepath.Join(out, filepath.FromSlash(esc), "@v", m.Version)
		_, err = modzip.CheckZip(m, base+".zip")
		require.NoError(t, err, m)

		gomod, err := os.ReadFile(base + ".mod")
		require.NoError(t, err)
		assert.Contains(t, string(gomod), "module "+m.Path+"\n")

		data, err := os.ReadFile(base + ".info")
		require.NoError(t, err)
		var info struct {
			Version string
			Time    time.Time
		}
		require.NoError(t, json.Unmarshal(data, &info))
		assert.Equal(t, m.Version, info.Version)
		assert.Equal(t, time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC), info.Time)
	}
	list, err := os.ReadFile(filepath.Join(out, "example.com/p/a/@v/list"))
	require.NoError(t, err)
	assert.Equal(t, "v0.2.0\nv0.3.0\n", string(list))

	assert.ErrorContains(t, publish(dir, "HEAD", "v0.3.0", out, []string{"nope"}), "publish nope")
	assert.ErrorContains(t, publish(dir, "HEAD", "v2.0.0", out, []string{"a"}), "invalid version")
}

func TestTidyUsesTheWorkspacesModules(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("tidy runs go mod tidy: go is not on PATH")
	}
	files := released()
	files["a/a.go"] = "package a\n\nimport _ \"example.com/p\"\n"
	files["cmd/b/main.go"] = "package main\n\nimport _ \"example.com/p/a\"\n\nfunc main() {}\n"
	tree(t, files)
	// example.com/p v0.1.0 is nowhere to be fetched: only this tree has it.
	t.Setenv("GOPROXY", "off")
	t.Setenv("GOFLAGS", "-mod=mod")

	require.NoError(t, tidy())
	a, err := os.ReadFile("a/go.mod")
	require.NoError(t, err)
	assert.Equal(t, "module example.com/p/a\n\ngo 1.25.0\n\nrequire example.com/p v0.1.0\n", string(a),
		"tidy drops the unused requirement and keeps no replace")
	b, err := os.ReadFile("cmd/b/go.mod")
	require.NoError(t, err)
	assert.Equal(t, "module example.com/p/cmd/b\n\ngo 1.25.0\n\n"+
		"// b uses a.\nrequire (\n\texample.com/p v0.1.0 // indirect\n\texample.com/p/a v0.1.0\n)\n", string(b))

	// A failing go mod tidy leaves go.mod as it was.
	files["a/a.go"] = "package a\n\nimport _ \"example.com/nowhere\"\n"
	tree(t, files)
	require.Error(t, tidy())
	a, err = os.ReadFile("a/go.mod")
	require.NoError(t, err)
	assert.Equal(t, files["a/go.mod"], string(a))
}
