// Command releasetool does the module bookkeeping of a release (see
// RELEASING.md). Run it from the repository's root, where go.work is:
//
//	releasetool check [-version VERSION]
//	releasetool require -version VERSION
//	releasetool tidy
//	releasetool publish -version VERSION -out PROXYDIR [-repo DIR] [-rev REV] DIR...
//
// check reports what would make the modules fail their users once tagged:
// a module missing from go.work, a module path that does not match its
// directory (and so its tag prefix), a replace directive in a go.mod, and a
// requirement on one of the project's modules that is not one common
// release version (with -version: not VERSION). It also checks that go.work
// replaces that version of every module of the workspace by its directory:
// a workspace module only sets a root of the module graph, and without the
// replace the go command would fetch the go.mod of the version required
// (golang/go#66516), which before the release exists nowhere.
//
// require sets every requirement on one of the project's modules, in every
// go.mod of the workspace, to VERSION, and go.work's replaces with it: the
// edit of a release commit.
//
// tidy runs go mod tidy in every module of the workspace. go mod tidy
// ignores go.work, so in a nested module it would fetch the root at the
// version required, which is not this tree's root (and before the first
// release, not anywhere): tidy points each required module of the project
// at its directory with a replace directive while go mod tidy runs, and
// removes the directive afterwards.
//
// publish writes the modules in the given directories ("." for the root)
// of REV into PROXYDIR laid out as a module proxy ("go help goproxy"), as
// though REV had been tagged VERSION for each of them, so that the go
// command can fetch them with GOPROXY=file://PROXYDIR as a user would fetch
// the released modules. The zips are made by golang.org/x/mod/zip from the
// revision's files, as the go command makes them from a tag: the
// directories of other modules are left out, and a module without a
// LICENSE of its own gets the repository's.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/mod/modfile"
	"golang.org/x/mod/module"
	"golang.org/x/mod/semver"
	modzip "golang.org/x/mod/zip"
)

const usage = `usage:
	releasetool check [-version VERSION]
	releasetool require -version VERSION
	releasetool tidy
	releasetool publish -version VERSION -out PROXYDIR [-repo DIR] [-rev REV] DIR...`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, usage)
		os.Exit(2)
	}
	fset := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	fset.Usage = func() { fmt.Fprintln(os.Stderr, usage) }
	version := fset.String("version", "", "the release version, vMAJOR.MINOR.PATCH[-PRERELEASE]")
	var err error
	switch os.Args[1] {
	case "check":
		_ = fset.Parse(os.Args[2:])
		err = check(*version)
	case "require":
		_ = fset.Parse(os.Args[2:])
		err = setRequirements(*version)
	case "tidy":
		_ = fset.Parse(os.Args[2:])
		err = tidy()
	case "publish":
		repo := fset.String("repo", ".", "the git repository's work tree")
		rev := fset.String("rev", "HEAD", "the revision to publish")
		out := fset.String("out", "", "the proxy directory to write into")
		_ = fset.Parse(os.Args[2:])
		if *out == "" || fset.NArg() == 0 {
			fset.Usage()
			os.Exit(2)
		}
		err = publish(*repo, *rev, *version, *out, fset.Args())
	default:
		fset.Usage()
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "releasetool:", err)
		os.Exit(1)
	}
}

// checkVersion reports whether v is a version a release can have.
func checkVersion(v string) error {
	if !semver.IsValid(v) || semver.Canonical(v) != v || semver.Build(v) != "" {
		return fmt.Errorf("%q is not a version vMAJOR.MINOR.PATCH[-PRERELEASE]", v)
	}
	if v == "v0.0.0" {
		return errors.New("v0.0.0 is a placeholder, never released")
	}
	if module.IsPseudoVersion(v) {
		return fmt.Errorf("%s is a pseudo-version, a commit rather than a release", v)
	}
	return nil
}

// A mod is one module of the workspace.
type mod struct {
	dir  string // slash-separated, relative to the root; "." for the root
	file *modfile.File
}

func (m mod) gomod() string { return path.Join(m.dir, "go.mod") }

// workDir is dir as go.work names a directory.
func workDir(dir string) string {
	if dir == "." {
		return "./"
	}
	return "./" + dir
}

// workspace reads go.work and the go.mod of every module it uses.
func workspace() (mods []mod, work *modfile.WorkFile, err error) {
	data, err := os.ReadFile("go.work")
	if err != nil {
		return nil, nil, err
	}
	work, err = modfile.ParseWork("go.work", data, nil)
	if err != nil {
		return nil, nil, err
	}
	for _, u := range work.Use {
		dir := path.Clean(filepath.ToSlash(u.Path))
		f, err := readMod(path.Join(dir, "go.mod"))
		if err != nil {
			return nil, nil, err
		}
		mods = append(mods, mod{dir: dir, file: f})
	}
	i := slices.IndexFunc(mods, func(m mod) bool { return m.dir == "." })
	if i < 0 {
		return nil, nil, errors.New("go.work does not use the root module (.)")
	}
	mods[0], mods[i] = mods[i], mods[0]
	return mods, work, nil
}

func readMod(file string) (*modfile.File, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	f, err := modfile.Parse(file, data, nil)
	if err != nil {
		return nil, err
	}
	if f.Module == nil {
		return nil, fmt.Errorf("%s: no module line", file)
	}
	return f, nil
}

// moduleDirs returns the directories under the root that hold a go.mod,
// skipping those the go command ignores (testdata, vendor, names starting
// with . or _).
func moduleDirs() ([]string, error) {
	var dirs []string
	err := filepath.WalkDir(".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			if p != "." && (name == "testdata" || name == "vendor" || strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_")) {
				return filepath.SkipDir
			}
			return nil
		}
		if name == "go.mod" {
			dirs = append(dirs, filepath.ToSlash(filepath.Dir(p)))
		}
		return nil
	})
	return dirs, err
}

func check(version string) error {
	if version != "" {
		if err := checkVersion(version); err != nil {
			return err
		}
	}
	mods, work, err := workspace()
	if err != nil {
		return err
	}
	var problems []string
	problem := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }

	dirs, err := moduleDirs()
	if err != nil {
		return err
	}
	for _, d := range dirs {
		if !slices.ContainsFunc(mods, func(m mod) bool { return m.dir == d }) {
			problem("%s/go.mod: the module is not in go.work's use list", d)
		}
	}

	rootPath := mods[0].file.Module.Mod.Path
	project := map[string]bool{}
	for _, m := range mods {
		project[m.file.Module.Mod.Path] = true
		if m.dir != "." && m.file.Module.Mod.Path != rootPath+"/"+m.dir {
			problem("%s: module %s; a nested module's path must be the root's path and its directory (%s/%s), which its tags start with",
				m.gomod(), m.file.Module.Mod.Path, rootPath, m.dir)
		}
	}

	// versions maps each version the project's modules are required at to
	// the first requirement that names it.
	versions := map[string]string{}
	var order []string
	for _, m := range mods {
		for _, r := range m.file.Replace {
			problem("%s: replace %s => %s: users' builds ignore it, and go install refuses a module that has one; go.work ties the modules together",
				m.gomod(), r.Old.Path, r.New.Path)
		}
		for _, r := range m.file.Require {
			if !project[r.Mod.Path] {
				continue
			}
			v := r.Mod.Version
			where := fmt.Sprintf("%s: require %s %s", m.gomod(), r.Mod.Path, v)
			if err := checkVersion(v); err != nil {
				problem("%s: %v; require the version being released", where, err)
				continue
			}
			if version != "" && v != version {
				problem("%s: the release is %s", where, version)
				continue
			}
			if _, ok := versions[v]; !ok {
				versions[v] = where
				order = append(order, v)
			}
		}
	}
	if len(order) > 1 {
		var list []string
		for _, v := range order {
			list = append(list, versions[v])
		}
		problem("the project's modules are required at more than one version (the modules are released together, at one version):\n\t%s",
			strings.Join(list, "\n\t"))
	}
	if len(order) == 1 {
		v := order[0]
		for _, m := range mods {
			p := m.file.Module.Mod.Path
			if !slices.ContainsFunc(work.Replace, func(r *modfile.Replace) bool {
				return r.Old.Path == p && r.Old.Version == v && r.New.Version == "" && path.Clean(r.New.Path) == m.dir
			}) {
				problem("go.work: no replace %s %s => %s: the workspace would fetch that version instead of using the directory", p, v, workDir(m.dir))
			}
		}
		for _, r := range work.Replace {
			if project[r.Old.Path] && r.Old.Version != v {
				problem("go.work: replace %s %s: the project's modules are required at %s", r.Old.Path, r.Old.Version, v)
			}
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("check:\n%s", strings.Join(problems, "\n"))
	}
	v := "(none)"
	if len(order) == 1 {
		v = order[0]
	}
	fmt.Printf("releasetool: %d modules in go.work; they require each other at %s\n", len(mods), v)
	return nil
}

func setRequirements(version string) error {
	if err := checkVersion(version); err != nil {
		return err
	}
	mods, work, err := workspace()
	if err != nil {
		return err
	}
	project := map[string]bool{}
	for _, m := range mods {
		project[m.file.Module.Mod.Path] = true
	}
	for _, r := range slices.Clone(work.Replace) {
		if project[r.Old.Path] {
			if err := work.DropReplace(r.Old.Path, r.Old.Version); err != nil {
				return err
			}
		}
	}
	work.Cleanup()
	var b strings.Builder
	b.Write(bytes.TrimRight(modfile.Format(work.Syntax), "\n"))
	b.WriteString("\n\n// Each module's version as required by the others is this directory.\nreplace (\n")
	for _, m := range mods {
		fmt.Fprintf(&b, "\t%s %s => %s\n", m.file.Module.Mod.Path, version, workDir(m.dir))
	}
	b.WriteString(")\n")
	if _, err := modfile.ParseWork("go.work", []byte(b.String()), nil); err != nil {
		return err
	}
	if err := os.WriteFile("go.work", []byte(b.String()), 0o666); err != nil {
		return err
	}
	for _, m := range mods {
		changed := false
		for _, r := range m.file.Require {
			if project[r.Mod.Path] && r.Mod.Version != version {
				if err := m.file.AddRequire(r.Mod.Path, version); err != nil {
					return err
				}
				changed = true
			}
		}
		if !changed {
			continue
		}
		if err := writeMod(m.gomod(), m.file); err != nil {
			return err
		}
	}
	return nil
}

func tidy() error {
	mods, _, err := workspace()
	if err != nil {
		return err
	}
	dirOf := map[string]string{}
	for _, m := range mods {
		dirOf[m.file.Module.Mod.Path] = m.dir
	}
	for _, m := range mods {
		if err := tidyModule(m, dirOf); err != nil {
			return fmt.Errorf("%s: %w", m.gomod(), err)
		}
	}
	return nil
}

// tidyModule runs go mod tidy in m with the project's modules that m
// requires replaced by their directories (dirOf maps module paths to
// directories).
func tidyModule(m mod, dirOf map[string]string) (err error) {
	var replaced []string
	for _, r := range m.file.Require {
		dir, ok := dirOf[r.Mod.Path]
		if !ok {
			continue
		}
		rel, err := filepath.Rel(filepath.FromSlash(m.dir), filepath.FromSlash(dir))
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if rel != ".." && !strings.HasPrefix(rel, "../") {
			rel = "./" + rel
		}
		if err := m.file.AddReplace(r.Mod.Path, "", rel, ""); err != nil {
			return err
		}
		replaced = append(replaced, r.Mod.Path)
	}
	if len(replaced) > 0 {
		orig, err := os.ReadFile(m.gomod())
		if err != nil {
			return err
		}
		if err := writeMod(m.gomod(), m.file); err != nil {
			return err
		}
		defer func() {
			if err != nil {
				// go mod tidy leaves go.mod alone when it fails.
				if werr := os.WriteFile(m.gomod(), orig, 0o666); werr != nil {
					err = errors.Join(err, werr)
				}
				return
			}
			f, rerr := readMod(m.gomod())
			if rerr == nil {
				for _, p := range replaced {
					if rerr = f.DropReplace(p, ""); rerr != nil {
						break
					}
				}
			}
			if rerr == nil {
				rerr = writeMod(m.gomod(), f)
			}
			err = rerr
		}()
	}
	cmd := exec.Command("go", "mod", "tidy")
	cmd.Dir = filepath.FromSlash(m.dir)
	cmd.Env = append(os.Environ(), "GOWORK=off")
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	return cmd.Run()
}

func writeMod(file string, f *modfile.File) error {
	f.Cleanup()
	data, err := f.Format()
	if err != nil {
		return err
	}
	return os.WriteFile(file, data, 0o666)
}

func publish(repo, rev, version, out string, dirs []string) error {
	if err := checkVersion(version); err != nil {
		return err
	}
	repo, err := filepath.Abs(repo)
	if err != nil {
		return err
	}
	// A proxy reports the time of the tagged commit.
	ct, err := git(repo, "log", "-1", "--format=%ct", rev)
	if err != nil {
		return err
	}
	secs, err := strconv.ParseInt(strings.TrimSpace(string(ct)), 10, 64)
	if err != nil {
		return fmt.Errorf("commit time of %s: %w", rev, err)
	}
	t := time.Unix(secs, 0).UTC()
	for _, dir := range dirs {
		if err := publishModule(repo, rev, dir, version, t, out); err != nil {
			return fmt.Errorf("publish %s: %w", dir, err)
		}
	}
	return nil
}

// publishModule writes the module in subdir of repo at rev into the proxy
// directory out as version.
func publishModule(repo, rev, subdir, version string, t time.Time, out string) error {
	subdir = path.Clean(filepath.ToSlash(subdir))
	if subdir == "." {
		subdir = ""
	}
	gomod, err := git(repo, "cat-file", "blob", rev+":"+path.Join(subdir, "go.mod"))
	if err != nil {
		return err
	}
	mpath := modfile.ModulePath(gomod)
	if mpath == "" {
		return errors.New("go.mod has no module line")
	}
	if err := module.Check(mpath, version); err != nil {
		return err
	}
	escPath, err := module.EscapePath(mpath)
	if err != nil {
		return err
	}
	escVersion, err := module.EscapeVersion(version)
	if err != nil {
		return err
	}
	dir := filepath.Join(out, filepath.FromSlash(escPath), "@v")
	if err := os.MkdirAll(dir, 0o777); err != nil {
		return err
	}
	base := filepath.Join(dir, escVersion)

	zf, err := os.Create(base + ".zip")
	if err != nil {
		return err
	}
	err = modzip.CreateFromVCS(zf, module.Version{Path: mpath, Version: version}, repo, rev, subdir)
	if cerr := zf.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err := os.WriteFile(base+".mod", gomod, 0o666); err != nil {
		return err
	}
	info, err := json.Marshal(struct {
		Version string
		Time    time.Time
	}{version, t})
	if err != nil {
		return err
	}
	if err := os.WriteFile(base+".info", info, 0o666); err != nil {
		return err
	}
	return addToList(filepath.Join(dir, "list"), version)
}

// addToList adds version to a module's list file in the proxy, once.
func addToList(file, version string) error {
	data, err := os.ReadFile(file)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	versions := strings.Fields(string(data))
	if slices.Contains(versions, version) {
		return nil
	}
	versions = append(versions, version)
	semver.Sort(versions)
	return os.WriteFile(file, []byte(strings.Join(versions, "\n")+"\n"), 0o666)
}

// git runs git in repo and returns its standard output.
func git(repo string, args ...string) ([]byte, error) {
	cmd := exec.Command("git", args...)
	cmd.Dir = repo
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("git %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}
