package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/ltransfer/ltransfer/convert/train"
	"github.com/ltransfer/ltransfer/graph"
)

func trainCommand() *cli.Command {
	return &cli.Command{
		Name:  "train",
		Usage: "train or fine-tune an ONNX model with SGD, writing its trajectory of checkpoints",
		Description: "Trains from --model (an initialization, or any checkpoint to fine-tune) with SGD as PyTorch's\n" +
			"torch.optim.SGD (momentum, weight decay), BatchNorm running statistics updated as PyTorch does.\n" +
			"--out receives ckpt_000.onnx (the starting point), one checkpoint per epoch (or every\n" +
			"--every-steps steps) and train.json (settings, validation scores, epoch summaries): a\n" +
			"trajectory that `ltransfer transfer` reads.",
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "model", Usage: "the ONNX model to start from (initialization or checkpoint)"},
			&cli.StringFlag{Name: "out", Usage: "output folder (created; must not hold ONNX files)"},
			&cli.IntFlag{Name: "epochs", Value: 1, Usage: "passes over the training data"},
			&cli.Float64Flag{Name: "lr", Value: 0.01, Usage: "learning rate"},
			&cli.Float64Flag{Name: "momentum", Value: 0.9, Usage: "SGD momentum"},
			&cli.Float64Flag{Name: "weight-decay", Usage: "L2 weight decay, as torch.optim.SGD's"},
			&cli.IntFlag{Name: "batch", Value: 128, Usage: "mini-batch size (the last, partial batch of an epoch is kept)"},
			&cli.StringFlag{Name: "schedule", Value: string(train.Constant), Usage: "learning rate schedule: constant, or cosine (annealed to 0 over all steps)"},
			&cli.Uint64Flag{Name: "seed", Value: 1, Usage: "seed of the example order"},
			&cli.IntFlag{Name: "every-steps", Usage: "write a checkpoint every N steps instead of every epoch"},
			&cli.IntFlag{Name: "eval-every", Usage: "also evaluate on the validation data every N steps"},
			&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "no progress output"},
			&cli.BoolFlag{Name: "json", Usage: "print the report (train.json) on stdout"},
		}, dataFlags()...),
		Before: positional(0, 0, "no arguments (the model is --model)"),
		Action: func(c *cli.Context) error {
			for _, f := range []string{"model", "out"} {
				if c.String(f) == "" {
					return usagef("--%s is required", f)
				}
			}
			opt := train.Options{
				Epochs: c.Int("epochs"), Batch: c.Int("batch"), LR: c.Float64("lr"), Momentum: c.Float64("momentum"),
				WeightDecay: c.Float64("weight-decay"), Schedule: train.Schedule(c.String("schedule")),
				Seed: c.Uint64("seed"), EverySteps: c.Int("every-steps"), EvalEvery: c.Int("eval-every"),
				Out: c.String("out"), Data: c.String("data"), ValData: c.String("val-data"),
			}
			if err := opt.Check(); err != nil {
				return usageError{err}
			}
			m, err := graph.Load(c.String("model"))
			if err != nil {
				return err
			}
			if opt.Train, opt.Val, err = openData(c); err != nil {
				return err
			}
			progress := newProgress(c.App.ErrWriter, c.Bool("quiet"))
			progress.start("train")
			opt.Progress = progress.train
			report, err := train.Run(c.Context, m, nil, opt)
			progress.done()
			if err != nil {
				return err
			}
			if c.Bool("json") {
				return printJSON(c.App.Writer, report)
			}
			if !c.Bool("quiet") {
				first, last := report.Evals[0], report.Evals[len(report.Evals)-1]
				fmt.Fprintf(c.App.ErrWriter, "train: %d steps, validation accuracy %.2f%% -> %.2f%%, %.1fs; wrote %s\n",
					last.Step, 100*first.Accuracy, 100*last.Accuracy, report.Seconds, opt.Out)
			}
			return nil
		},
	}
}
