package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/ltransfer/ltransfer/convert"
	"github.com/ltransfer/ltransfer/graph"
	"github.com/ltransfer/ltransfer/models"
)

const benchDescription = `Times GMT and FGMT as the paper runs them on MNIST: the source run's initialization and final
checkpoint, K=10 cosine-spaced points, gradients on one mini-batch of 128 per point, every step
evaluated on the validation split (the last 6000 training images), seed 1. Cases:

   mlp4096  the paper's 784-4096-10 linear MLP without biases, trained by PyTorch for 10 epochs
            from seeds 1 and 2: seed 1's trajectory onto seed 2's initialization. The checkpoints
            are not shipped: testdata/gen/bench_gmt_torch.py trains them into --checkpoints
            (mlp4096/seed{1,2}/ckpt_000.onnx, ckpt_010.onnx) and times PyTorch on them.
   cnn      testdata/cnn/seed1 (ckpt_000 and ckpt_002) onto its initialization redrawn with seed 2
   resnet   testdata/resnet/seed1, likewise

Each case and method runs in a fresh process, so that its peak resident memory is its own. The
table gives the wall time of the transfer and its split into gradients, score products,
assignments, evaluation and the rest; the peak RSS during the transfer; the transfer's memory
(peak RSS minus the RSS of the runtime and the data before the checkpoints were loaded) and the
bytes of the buffers the algorithm must hold at once (checkpoints, initialization, the point in
the session, the largest parameter, the gradient pairs the method keeps, the largest score
matrix), with their ratio; and the best validation accuracy.

With --passes FILE.onnx it times the model's passes instead, each in a fresh process: a training
pass (forward, cross-entropy and every parameter's gradient, BatchNorm with batch statistics), an
evaluation pass and a BatchNorm-statistics pass (one batch), at --batch on seeded random inputs,
the minimum and median wall time of --runs runs after a warm-up, the median CPU time of a run
(all threads; steadier than the wall time on a shared machine), with the process's peak RSS. With --torch
PYTHON it runs testdata/gen/bench_resnet_torch.py with that interpreter (same batch, runs and
GOMAXPROCS threads) and prints PyTorch's figures and the ratios beside them; the script's
--export writes the CIFAR-variant ResNet-18 it times as a training-mode ONNX file:

   /usr/bin/python3 testdata/gen/bench_resnet_torch.py --export /tmp/cifar_resnet18-train.onnx
   ltransfer bench --passes /tmp/cifar_resnet18-train.onnx --torch /usr/bin/python3`

func benchCommand() *cli.Command {
	home, _ := os.UserHomeDir()
	return &cli.Command{
		Name:        "bench",
		Usage:       "time GMT and FGMT on the paper's MNIST setting and the cnn and resnet fixtures",
		UsageText:   "ltransfer bench [--checkpoints DIR] [--models mlp4096,cnn,resnet] [--methods gmt,fgmt] [--json]\n   ltransfer bench --passes FILE.onnx [--batch 128] [--runs 3] [--torch PYTHON] [--json]",
		Description: benchDescription,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "checkpoints", Value: filepath.Join(home, ".cache", "ltransfer", "bench"), Usage: "folder of the mlp4096 checkpoints"},
			&cli.StringFlag{Name: "fixtures", Value: "testdata", Usage: "the repository's testdata folder (cnn, resnet)"},
			&cli.StringFlag{Name: "models", Value: "mlp4096,cnn,resnet", Usage: "cases to run"},
			&cli.StringFlag{Name: "methods", Value: "gmt,fgmt", Usage: "methods to run"},
			&cli.StringFlag{Name: "data", Usage: "MNIST as mnist:DIR (default: the GoMNIST module in the Go module cache)"},
			&cli.IntFlag{Name: "steps", Value: 10, Usage: "interpolation points (K)"},
			&cli.Uint64Flag{Name: "seed", Value: 1, Usage: "seed of the mini-batches and the matching order"},
			&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "no progress output"},
			&cli.BoolFlag{Name: "json", Usage: "print the results as JSON on stdout"},
			&cli.StringFlag{Name: "passes", Usage: "time the training, evaluation and BatchNorm-statistics passes of this ONNX file instead"},
			&cli.IntFlag{Name: "batch", Value: 128, Usage: "batch size of --passes"},
			&cli.IntFlag{Name: "runs", Value: 3, Usage: "timed runs of each pass (--passes)"},
			&cli.StringFlag{Name: "torch", Usage: "with --passes: a python3 with torch and torchvision to time PyTorch beside"},
			&cli.StringFlag{Name: "pass", Hidden: true, Usage: "with --child: the pass to time"},
			&cli.BoolFlag{Name: "child", Hidden: true, Usage: "run one case and method in this process and print its result as JSON"},
		},
		Before: positional(0, 0, "no arguments"),
		Action: func(c *cli.Context) error {
			if c.String("passes") != "" {
				if c.Bool("child") {
					return passChild(c)
				}
				return passParent(c)
			}
			if c.Bool("child") {
				return benchChild(c)
			}
			return benchParent(c)
		},
	}
}

// benchParent runs every case and method in a child process and prints the table.
func benchParent(c *cli.Context) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	var rows []*benchResult
	for _, model := range strings.Split(c.String("models"), ",") {
		if model == "mlp4096" {
			if _, err := os.Stat(filepath.Join(c.String("checkpoints"), "mlp4096", "seed2", "ckpt_000.onnx")); err != nil {
				fmt.Fprintf(c.App.ErrWriter, "bench: skipping mlp4096: %v (testdata/gen/bench_gmt_torch.py creates the checkpoints)\n", err)
				continue
			}
		}
		for _, method := range strings.Split(c.String("methods"), ",") {
			args := []string{"bench", "--child", "--models", model, "--methods", method,
				"--checkpoints", c.String("checkpoints"), "--fixtures", c.String("fixtures"), "--data", c.String("data"),
				"--steps", fmt.Sprint(c.Int("steps")), "--seed", fmt.Sprint(c.Uint64("seed"))}
			if c.Bool("quiet") {
				args = append(args, "--quiet")
			}
			cmd := exec.Command(exe, args...)
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, c.App.ErrWriter
			if err := cmd.Run(); err != nil {
				return fmt.Errorf("bench %s %s: %w", model, method, err)
			}
			var r benchResult
			if err := json.Unmarshal(out.Bytes(), &r); err != nil {
				return fmt.Errorf("bench %s %s: reading the result: %w", model, method, err)
			}
			rows = append(rows, &r)
		}
	}
	if c.Bool("json") {
		return printJSON(c.App.Writer, rows)
	}
	fmt.Fprintf(c.App.Writer, "ltransfer bench: BLAS %s, GOMAXPROCS %d; K=%d cosine, batch 128, 1 gradient batch, seed %d; one process per row\n",
		graph.BLAS, runtime.GOMAXPROCS(0), c.Int("steps"), c.Uint64("seed"))
	tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "MODEL\tMETHOD\tWALL s\tGRAD s\tSCORE s\tASSIGN s\tEVAL s\tOTHER s\tPEAK RSS MB\tTRANSFER MB\tBUFFERS MB\tRATIO\tBEST ACC\tSTEP\t\n")
	const mb = 1 << 20
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t%.0f\t%.0f\t%.0f\t%.2f\t%.2f%%\t%d\t\n",
			r.Model, r.Method, r.Seconds, r.GradSeconds, r.ScoreSeconds, r.AssignSeconds, r.EvalSeconds, r.OtherSeconds,
			float64(r.PeakRSSBytes)/mb, float64(r.TransferBytes)/mb, float64(r.BufferBytes)/mb,
			float64(r.TransferBytes)/float64(r.BufferBytes), 100*r.BestAccuracy, r.BestStep)
	}
	return tw.Flush()
}

// benchChild runs one case and method and prints the result as JSON.
func benchChild(c *cli.Context) error {
	train, val, _, err := fixtureMNIST(c.String("data"))
	if err != nil {
		return err
	}
	debug.FreeOSMemory()
	_, base, err := readRSS()
	if err != nil {
		return err
	}
	bc, err := loadBenchCase(c.String("models"), c.String("checkpoints"), c.String("fixtures"))
	if err != nil {
		return err
	}
	opt := convert.Options{Method: c.String("methods"), Steps: c.Int("steps"), Schedule: convert.Cosine, Batch: 128,
		GradBatches: 1, NormBatches: 20, Seed: c.Uint64("seed"), Train: train, Val: val}
	if !c.Bool("quiet") {
		progress := newProgress(c.App.ErrWriter, false)
		progress.start(bc.model + " " + opt.Method)
		opt.Progress = progress.step
		defer progress.done()
	}
	lowerGC() // as the transfer command does
	r, err := benchTransfer(c.Context, *bc, opt, base)
	if err != nil {
		return err
	}
	return json.NewEncoder(c.App.Writer).Encode(r)
}

// loadBenchCase loads the named case.
func loadBenchCase(model, checkpoints, fixtures string) (*benchCase, error) {
	switch model {
	case "mlp4096":
		dir := filepath.Join(checkpoints, "mlp4096")
		src, err := convert.LoadTrajectory(filepath.Join(dir, "seed1", "ckpt_000.onnx"), filepath.Join(dir, "seed1", "ckpt_010.onnx"))
		if err != nil {
			return nil, err
		}
		init, err := graph.Load(filepath.Join(dir, "seed2", "ckpt_000.onnx"))
		if err != nil {
			return nil, err
		}
		return &benchCase{model: model, source: src, init: init}, nil
	case "cnn", "resnet":
		dir := filepath.Join(fixtures, model, "seed1")
		src, err := convert.LoadTrajectory(filepath.Join(dir, "ckpt_000.onnx"), filepath.Join(dir, "ckpt_002.onnx"))
		if err != nil {
			return nil, err
		}
		// The new initialization: the source's architecture with every parameter redrawn the
		// PyTorch way from seed 2 (the decoded model is shared, not decoded again).
		first := src.Checkpoints[0]
		params, err := models.Reinit(first, 2)
		if err != nil {
			return nil, err
		}
		init := *first
		init.Params, init.Path = params, first.Path+" (redrawn, seed 2)"
		return &benchCase{model: model, source: src, init: &init}, nil
	}
	return nil, usagef("unknown bench model %q (want mlp4096, cnn or resnet)", model)
}

// passParent times every pass of --passes in a child process, and PyTorch's with --torch, and
// prints the table.
func passParent(c *cli.Context) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	var rows []*passResult
	for _, pass := range benchPasses {
		cmd := exec.Command(exe, "bench", "--child", "--pass", pass, "--passes", c.String("passes"),
			"--batch", fmt.Sprint(c.Int("batch")), "--runs", fmt.Sprint(c.Int("runs")))
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, c.App.ErrWriter
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("bench %s pass: %w", pass, err)
		}
		var r passResult
		if err := json.Unmarshal(out.Bytes(), &r); err != nil {
			return fmt.Errorf("bench %s pass: reading the result: %w", pass, err)
		}
		rows = append(rows, &r)
	}
	var torch []*passResult
	if py := c.String("torch"); py != "" {
		script := filepath.Join(c.String("fixtures"), "gen", "bench_resnet_torch.py")
		cmd := exec.Command(py, script, "--json", "--batch", fmt.Sprint(c.Int("batch")), "--runs", fmt.Sprint(c.Int("runs")),
			"--threads", fmt.Sprint(runtime.GOMAXPROCS(0)))
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, c.App.ErrWriter
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("bench: %s %s: %w", py, script, err)
		}
		if err := json.Unmarshal(out.Bytes(), &torch); err != nil || len(torch) != len(rows) {
			return fmt.Errorf("bench: reading the output of %s: %v", script, errors.Join(err, fmt.Errorf("%d passes", len(torch))))
		}
	}
	if c.Bool("json") {
		return printJSON(c.App.Writer, map[string]any{"ltransfer": rows, "torch": torch})
	}
	fmt.Fprintf(c.App.Writer, "ltransfer bench --passes %s: BLAS %s, GOMAXPROCS %d, batch %d; min and median of %d runs after a warm-up; one process per row\n",
		c.String("passes"), graph.BLAS, runtime.GOMAXPROCS(0), c.Int("batch"), c.Int("runs"))
	tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', tabwriter.AlignRight)
	const mb = 1 << 20
	if torch == nil {
		fmt.Fprintf(tw, "PASS\tMIN s\tMEDIAN s\tCPU s\tPEAK RSS MB\t\n")
		for _, r := range rows {
			fmt.Fprintf(tw, "%s\t%.2f\t%.2f\t%.2f\t%.0f\t\n", r.Pass, r.MinSeconds, r.MedianSeconds, r.CPUSeconds, float64(r.PeakRSSBytes)/mb)
		}
		return tw.Flush()
	}
	fmt.Fprintf(tw, "PASS\tMIN s\tMEDIAN s\tCPU s\tPEAK RSS MB\tTORCH MIN s\tTORCH MEDIAN s\tTORCH CPU s\tTORCH RSS MB\tTIME RATIO\tCPU RATIO\tRSS RATIO\t\n")
	for i, r := range rows {
		t := torch[i]
		fmt.Fprintf(tw, "%s\t%.2f\t%.2f\t%.2f\t%.0f\t%.2f\t%.2f\t%.2f\t%.0f\t%.2f\t%.2f\t%.2f\t\n", r.Pass, r.MinSeconds, r.MedianSeconds,
			r.CPUSeconds, float64(r.PeakRSSBytes)/mb, t.MinSeconds, t.MedianSeconds, t.CPUSeconds, float64(t.PeakRSSBytes)/mb,
			r.MedianSeconds/t.MedianSeconds, r.CPUSeconds/t.CPUSeconds, float64(r.PeakRSSBytes)/float64(t.PeakRSSBytes))
	}
	return tw.Flush()
}

// passChild times one pass of --passes and prints the result as JSON.
func passChild(c *cli.Context) error {
	m, err := graph.Load(c.String("passes"))
	if err != nil {
		return err
	}
	r, err := benchPass(m, c.String("pass"), c.Int("batch"), c.Int("runs"))
	if err != nil {
		return err
	}
	return json.NewEncoder(c.App.Writer).Encode(r)
}
