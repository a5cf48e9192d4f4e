// Command ltransfer transfers the learning trajectory of one neural-network training run onto a
// new initialization, reading and writing ONNX (Chijiwa, "Transferring Learning Trajectories of
// Neural Networks", ICLR 2024).
//
// Exit codes: 0 on success, 1 when the work failed, 2 on bad usage.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/ltransfer/ltransfer/internal/version"
)

// usageError marks errors in how the command was called (exit code 2).
type usageError struct{ error }

// printJSON writes v to w as indented JSON, the form of every command's --json output.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func usagef(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

func newApp(stdout, stderr io.Writer) *cli.App {
	onUsage := func(_ *cli.Context, err error, _ bool) error { return usageError{err} }
	app := &cli.App{
		Name:      "ltransfer",
		Usage:     "transfer learning trajectories between initializations of ONNX models",
		Version:   version.Get().String(),
		Writer:    stdout,
		ErrWriter: stderr,
		// `ltransfer --generate-bash-completion` lists the commands; see README for the
		// shell's setup.
		EnableBashCompletion: true,
		Commands: []*cli.Command{
			demoCommand(),
			inspectCommand(),
			transferCommand(),
			evalCommand(),
			initCommand(),
			permuteCommand(),
			trainCommand(),
			batchCommand(),
			benchCommand(),
			experimentCommand(),
		},
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usagef("unknown command %q (see ltransfer help)", c.Args().First())
			}
			return cli.ShowAppHelp(c)
		},
		OnUsageError:   onUsage,
		ExitErrHandler: func(*cli.Context, error) {}, // run decides the exit code
	}
	for _, c := range app.Commands {
		c.OnUsageError = onUsage
	}
	return app
}

func main() {
	// The first SIGINT or SIGTERM cancels the command's context: long work (a transfer, a
	// training run, a batch) stops cleanly between two steps, leaving only complete files.
	// After it the signals kill the process again, which the atomic writes make safe too.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	context.AfterFunc(ctx, stop)
	os.Exit(run(ctx, os.Args, os.Stdout, os.Stderr))
}

// run executes the command line and returns the process exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return runApp(ctx, newApp(stdout, stderr), args)
}

// runApp runs app on the command line, with flags accepted anywhere, and returns the exit code.
func runApp(ctx context.Context, app *cli.App, args []string) int {
	err := app.RunContext(ctx, flagsFirst(app, args))
	if err == nil {
		return 0
	}
	if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		// The work stopped because of a signal: say so first, then where it stopped.
		fmt.Fprintf(app.ErrWriter, "ltransfer: interrupted (%v): %v\n", context.Cause(ctx), err)
		return 1
	}
	fmt.Fprintln(app.ErrWriter, "ltransfer:", err)
	var u usageError
	if errors.As(err, &u) {
		return 2
	}
	return 1
}
