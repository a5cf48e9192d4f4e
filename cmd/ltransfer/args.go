package main

import (
	"os"
	"strings"

	"github.com/urfave/cli/v2"
)

// Flags anywhere. urfave/cli v2 parses a command's flags with the standard library's flag
// package, which stops at the first positional argument: `ltransfer permute m.onnx -o out.onnx`
// would leave -o unparsed. flagsFirst rewrites the command line before the parse, with each
// command's own flag definitions: the flags (and the values of the flags that take one) move
// before the positional arguments, in their order, and a "--" separates the two, so that a
// positional argument that starts with a dash (after the user's own "--") stays positional.

// completionFlag is the argument with which a shell asks urfave/cli for completions; it must
// stay last, and completion is off after a "--", so such a command line is left as it is.
const completionFlag = "--generate-bash-completion"

// flagsFirst returns args (args[0] is the program) with every command's flags before its
// positional arguments.
func flagsFirst(app *cli.App, args []string) []string {
	if len(args) < 2 || args[len(args)-1] == completionFlag {
		return args
	}
	// The application's own flags (--help, --version) come before the command.
	i := 1
	for i < len(args) && strings.HasPrefix(args[i], "-") && args[i] != "--" {
		i++
	}
	if i == len(args) {
		return args
	}
	cmd := app.Command(args[i])
	if cmd == nil {
		return args
	}
	takesValue := map[string]bool{}
	for _, f := range cmd.Flags {
		v, ok := f.(cli.DocGenerationFlag)
		for _, name := range f.Names() {
			takesValue[name] = ok && v.TakesValue()
		}
	}
	out := append([]string(nil), args[:i+1]...)
	var positional []string
	help := false
	rest := args[i+1:]
	for k := 0; k < len(rest); k++ {
		a := rest[k]
		switch {
		case a == "--":
			positional = append(positional, rest[k+1:]...)
			k = len(rest)
		case len(a) > 1 && a[0] == '-':
			out = append(out, a)
			name, _, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
			help = help || name == "help" || name == "h"
			if takesValue[name] && !hasValue {
				if k+1 == len(rest) {
					return out // the flag's missing value is the parse error to report
				}
				k++
				out = append(out, rest[k])
			}
		default:
			positional = append(positional, a)
		}
	}
	// With --help, urfave/cli would take the first argument for a help topic.
	if len(positional) > 0 && !help {
		out = append(append(out, "--"), positional...)
	}
	return out
}

// positional is the Before hook of a command that takes min to max positional arguments (max < 0:
// any number); want says what they are, for the error. It runs after the flags are parsed and
// before the action, which can then rely on the count.
func positional(min, max int, want string) cli.BeforeFunc {
	return func(c *cli.Context) error {
		if n := c.NArg(); n < min || (max >= 0 && n > max) {
			return usagef("%s takes %s, got %q", c.Command.Name, want, c.Args().Slice())
		}
		return nil
	}
}

// commaList splits a comma-separated list, dropping blanks; an empty list gives nil.
func commaList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// pathList reads a flag that names a folder or a comma-separated list of files: a value that
// names an existing file or folder is that one path, commas included; anything else is split
// at its commas.
func pathList(s string) []string {
	if _, err := os.Stat(s); err == nil {
		return []string{s}
	}
	return commaList(s)
}
