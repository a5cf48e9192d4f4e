package main

import (
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/ltransfer/ltransfer/convert"
)

func transferFlags() []cli.Flag {
	return append([]cli.Flag{
		&cli.StringFlag{Name: "init", Usage: "the new initialization (ONNX file of the trajectory's architecture)"},
		&cli.Uint64Flag{Name: "init-seed", Usage: "instead of --init, draw the initialization from this seed (the first checkpoint redrawn, as init --from does; written as init.onnx)"},
		&cli.StringFlag{Name: "out", Usage: "output folder", Required: true},
		&cli.StringFlag{Name: "method", Value: "gmt", Usage: "gmt, fgmt, naive or oracle"},
		&cli.StringFlag{Name: "target-trajectory", Usage: "the target run's own trajectory (folder or first,last files), for --method oracle"},
		&cli.IntFlag{Name: "steps", Value: 10, Usage: "interpolation points between consecutive checkpoints"},
		&cli.StringFlag{Name: "schedule", Value: "cosine", Usage: "uniform or cosine spacing of the points"},
		&cli.IntFlag{Name: "batch", Value: 128, Usage: "mini-batch size"},
		&cli.IntFlag{Name: "grad-batches", Value: 1, Usage: "mini-batches per gradient"},
		&cli.IntFlag{Name: "bn-batches", Value: 20, Usage: "batches to recompute BatchNorm statistics of every point"},
		&cli.Uint64Flag{Name: "seed", Value: 1, Usage: "seed of the mini-batches and the matching order"},
		&cli.StringFlag{Name: "save", Value: "steps,best,final", Usage: "which ONNX files to write: any of steps, best, final"},
		&cli.BoolFlag{Name: "allow-nonfinite", Usage: "accept checkpoints with NaN or infinite parameters (the naive method goes through, matching fails)"},
		&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "no progress output"},
		&cli.BoolFlag{Name: "json", Usage: "print the summary as JSON on stdout"},
	}, dataFlags()...)
}

func transferCommand() *cli.Command {
	return &cli.Command{
		Name:      "transfer",
		Usage:     "transfer a trajectory onto a new initialization (GMT, FGMT, naive or oracle)",
		ArgsUsage: "TRAJECTORY_DIR | CHECKPOINT.onnx...",
		Flags:     transferFlags(),
		Before:    positional(1, -1, "the source trajectory: a folder of ONNX checkpoints or the checkpoint files in order"),
		Action: func(c *cli.Context) error {
			if c.IsSet("init") == c.IsSet("init-seed") {
				return usagef("transfer needs exactly one of --init FILE.onnx and --init-seed N")
			}
			var initSeed *uint64
			if c.IsSet("init-seed") {
				seed := c.Uint64("init-seed")
				initSeed = &seed
			}
			if err := convert.CheckMethod(c.String("method")); err != nil {
				return usagef("--method: %w", err)
			}
			schedule, err := convert.ParseSchedule(c.String("schedule"))
			if err != nil {
				return usageError{err}
			}
			save := map[string]bool{}
			for _, s := range strings.Split(c.String("save"), ",") {
				if s = strings.TrimSpace(s); s != "steps" && s != "best" && s != "final" {
					return usagef("--save %q: want a comma-separated list of steps, best, final", c.String("save"))
				}
				save[s] = true
			}
			train, val, err := openData(c)
			if err != nil {
				return err
			}
			job := convert.Job{
				Trajectory: c.Args().Slice(),
				Init:       c.String("init"),
				InitSeed:   initSeed,
				Target:     pathList(c.String("target-trajectory")),
				Out:        c.String("out"),
				Save:       save,
				Data:       c.String("data"),
				ValData:    c.String("val-data"),
				Options: convert.Options{
					Method: c.String("method"), Steps: c.Int("steps"), Schedule: schedule, Batch: c.Int("batch"),
					GradBatches: c.Int("grad-batches"), NormBatches: c.Int("bn-batches"), Seed: c.Uint64("seed"),
					Train: train, Val: val, AllowNonFinite: c.Bool("allow-nonfinite"),
				},
			}
			progress := newProgress(c.App.ErrWriter, c.Bool("quiet"))
			progress.start(job.Options.Method)
			job.Options.Progress = progress.step
			lowerGC()
			report, err := job.Run(c.Context)
			progress.done()
			if err != nil {
				return err
			}
			if c.Bool("json") {
				return printJSON(c.App.Writer, report)
			}
			if !c.Bool("quiet") {
				best := report.Steps[report.BestStep]
				last := report.Steps[len(report.Steps)-1]
				fmt.Fprintf(c.App.ErrWriter, "%s: best step %d (accuracy %.2f%%), final %.2f%%, %.1fs; wrote %s\n",
					report.Method, report.BestStep, 100*best.Accuracy, 100*last.Accuracy, report.Seconds, job.Out)
			}
			return nil
		},
	}
}
