package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

// parsed is what a command received in parse-only mode.
type parsed struct {
	command string
	args    []string
	set     map[string]bool
}

// parseOnly runs the command line through the real application (flag definitions, required
// flags, the commands' argument counts) with every command's action replaced by a recorder.
func parseOnly(t *testing.T, args ...string) (int, *parsed, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	app := newApp(&out, &errOut)
	var got *parsed
	for _, c := range app.Commands {
		c.Action = func(c *cli.Context) error {
			got = &parsed{command: c.Command.Name, args: c.Args().Slice(), set: map[string]bool{}}
			for _, f := range c.Command.Flags {
				for _, name := range f.Names() {
					got.set[name] = c.IsSet(name)
				}
			}
			return nil
		}
	}
	code := runApp(context.Background(), app, append([]string{"ltransfer"}, args...))
	return code, got, errOut.String()
}

func TestFlagsAnywhere(t *testing.T) {
	cases := []struct {
		line  []string
		args  []string
		flags []string
	}{
		{[]string{"permute", "m.onnx", "--seed", "3", "-o", "out.onnx"}, []string{"m.onnx"}, []string{"seed", "o"}},
		{[]string{"permute", "--seed=3", "m.onnx", "-o=out.onnx"}, []string{"m.onnx"}, []string{"seed", "o"}},
		{[]string{"inspect", "m.onnx", "--json"}, []string{"m.onnx"}, []string{"json"}},
		{[]string{"eval", "a.onnx", "--data", "mnist:d", "b.onnx", "--json", "c.onnx"}, []string{"a.onnx", "b.onnx", "c.onnx"}, []string{"data", "json"}},
		{[]string{"batch", "m.yaml", "--parallel", "2", "-q"}, []string{"m.yaml"}, []string{"parallel", "quiet"}},
		// A value that looks like a flag belongs to the flag before it; "--" ends the flags.
		{[]string{"transfer", "--out", "-odd-", "run1", "--init-seed", "2", "--", "--json", "-q"}, []string{"run1", "--json", "-q"}, []string{"out", "init-seed"}},
		{[]string{"inspect", "--", "-dash.onnx"}, []string{"-dash.onnx"}, nil},
		{[]string{"help", "permute"}, nil, nil},
	}
	for _, tc := range cases {
		code, got, stderr := parseOnly(t, tc.line...)
		if tc.line[0] == "help" {
			if code != 0 || got != nil {
				t.Errorf("%q: exit %d, ran %+v: %s", tc.line, code, got, stderr)
			}
			continue
		}
		if code != 0 || got == nil {
			t.Errorf("%q: exit %d: %s", tc.line, code, stderr)
			continue
		}
		if !slices.Equal(got.args, tc.args) {
			t.Errorf("%q: arguments %q, want %q", tc.line, got.args, tc.args)
		}
		for _, f := range tc.flags {
			if !got.set[f] {
				t.Errorf("%q: --%s not set", tc.line, f)
			}
		}
		if tc.line[0] == "transfer" && got.set["json"] {
			t.Errorf("%q: --json after -- was parsed as a flag", tc.line)
		}
	}
	// Still usage errors: a flag the command lacks, a missing value, a wrong count.
	for _, line := range [][]string{
		{"inspect", "m.onnx", "--no-such-flag"},
		{"permute", "m.onnx", "-o"},
		{"inspect", "a.onnx", "--json", "b.onnx"},
		{"init", "--seed", "1", "-o", "x.onnx", "extra"},
	} {
		if code, _, _ := parseOnly(t, line...); code != 2 {
			t.Errorf("%q: exit %d, want 2", line, code)
		}
	}
}

// TestREADMECommandsParse reads every ltransfer command line of README.md's code blocks and
// checks that the CLI parses it as written: every flag known and given a valid value, required
// flags present, the right number of positional arguments, no flag left unparsed.
func TestREADMECommandsParse(t *testing.T) {
	lines := readmeCommands(t, "../../README.md")
	seen := map[string]bool{}
	for _, args := range lines {
		code, got, stderr := parseOnly(t, args...)
		if code == 0 && got == nil && len(args) == 1 && strings.HasPrefix(args[0], "-") {
			continue // an option of ltransfer itself, such as --version
		}
		if code != 0 || got == nil {
			t.Errorf("README: ltransfer %s: exit %d, not parsed: %s", strings.Join(args, " "), code, stderr)
			continue
		}
		seen[got.command] = true
		for _, a := range args {
			if a == "--" {
				break
			}
			if name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "="); strings.HasPrefix(a, "-") && !got.set[name] {
				t.Errorf("README: ltransfer %s: %s not parsed as a flag", strings.Join(args, " "), a)
			}
		}
	}
	// Every command is documented by at least one line.
	for _, c := range newApp(nil, nil).Commands {
		if !c.Hidden && !seen[c.Name] {
			t.Errorf("README shows no command line of ltransfer %s", c.Name)
		}
	}
}

// readmeCommands returns the arguments of every ltransfer command in the fenced code blocks of
// a Markdown file: the lines, or parts of && chains, that start with `ltransfer`, `go run
// [flags] ./cmd/ltransfer` or `docker run [options] IMAGE` for an image named ltransfer, after
// environment assignments; continuation lines joined, comments dropped, shell quotes removed.
func readmeCommands(t *testing.T, path string) [][]string {
	t.Helper()
	text, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var cmds [][]string
	inBlock, pending := false, ""
	for _, line := range strings.Split(string(text), "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			inBlock = !inBlock
			continue
		}
		if !inBlock {
			continue
		}
		line = pending + line
		if strings.HasSuffix(line, `\`) {
			pending = strings.TrimSuffix(line, `\`)
			continue
		}
		pending = ""
		words := shellWords(line)
		for len(words) > 0 { // each command of a && chain
			cmd, rest := words, []string(nil)
			if i := slices.Index(words, "&&"); i >= 0 {
				cmd, rest = words[:i], words[i+1:]
			}
			words = rest
			args := ltransferArgs(cmd)
			if args == nil {
				continue
			}
			for _, a := range args {
				if strings.ContainsAny(a, "[]|") || strings.Contains(a, "...") {
					t.Errorf("%s: ltransfer %s: write a command that runs, not a synopsis (%q)", path, strings.Join(args, " "), a)
				}
			}
			cmds = append(cmds, args)
		}
	}
	if len(cmds) < 10 {
		t.Fatalf("%s: found only %d ltransfer command lines", path, len(cmds))
	}
	return cmds
}

var (
	envAssign = regexp.MustCompile(`^[A-Z_][A-Z0-9_]*=`)
	image     = regexp.MustCompile(`^ltransfer(:[\w.-]+)?$`)
)

// ltransferArgs returns the arguments of ltransfer in a shell command line, or nil when the
// line does not run ltransfer.
func ltransferArgs(words []string) []string {
	for len(words) > 0 && envAssign.MatchString(words[0]) {
		words = words[1:]
	}
	switch {
	case len(words) > 0 && words[0] == "ltransfer":
		return words[1:]
	case len(words) > 2 && words[0] == "go" && words[1] == "run":
		if i := slices.Index(words, "./cmd/ltransfer"); i > 0 {
			return words[i+1:]
		}
	case len(words) > 2 && words[0] == "docker" && words[1] == "run":
		if i := slices.IndexFunc(words, image.MatchString); i > 0 {
			return words[i+1:]
		}
	}
	return nil
}

// shellWords splits a shell command line into words: blanks separate them, single and double
// quotes group, and an unquoted # starts a comment.
func shellWords(line string) []string {
	var words []string
	var w strings.Builder
	inWord := false
	var quote rune
	for _, r := range line {
		switch {
		case quote != 0 && r == quote:
			quote = 0
		case quote != 0:
			w.WriteRune(r)
		case r == '\'' || r == '"':
			quote, inWord = r, true
		case r == '#' && !inWord:
			return append(words, flush(&w, &inWord)...)
		case r == ' ' || r == '\t':
			words = append(words, flush(&w, &inWord)...)
		default:
			w.WriteRune(r)
			inWord = true
		}
	}
	return append(words, flush(&w, &inWord)...)
}

func flush(w *strings.Builder, inWord *bool) []string {
	if !*inWord {
		return nil
	}
	s := w.String()
	w.Reset()
	*inWord = false
	return []string{s}
}

// TestHelpAnywhere: --help after a command's arguments shows the command's help.
func TestHelpAnywhere(t *testing.T) {
	for _, line := range [][]string{{"permute", "m.onnx", "--help"}, {"permute", "-h", "m.onnx"}, {"help", "permute"}} {
		code, out, stderr := runCLI(line...)
		if code != 0 || !strings.Contains(out, "ltransfer permute [command options] MODEL.onnx") {
			t.Errorf("%q: exit %d, output %q, stderr %q", line, code, out, stderr)
		}
	}
}

// TestPathList checks how a trajectory flag is read: an existing path stays whole, commas
// included; otherwise the value is a comma-separated list of files.
func TestPathList(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run,2")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		in   string
		want []string
	}{
		{dir, []string{dir}},
		{"a.onnx, b.onnx", []string{"a.onnx", "b.onnx"}},
		{"", nil},
	} {
		if got := pathList(c.in); !slices.Equal(got, c.want) {
			t.Errorf("pathList(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}
