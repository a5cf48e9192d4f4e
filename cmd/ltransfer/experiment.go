package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/ltransfer/ltransfer/convert"
	"github.com/ltransfer/ltransfer/convert/dataset"
	"github.com/ltransfer/ltransfer/convert/experiment"
	"github.com/ltransfer/ltransfer/convert/train"
)

const experimentDescription = `Compares naive, FGMT, GMT and oracle transfers, and what fine-tuning makes of them, on one
scenario, with SGD (--lr, --momentum, --weight-decay, --batch) for every training run:

   scratch   train --arch from --source-seed and from --target-seed for --epochs, transfer the
             source run onto the target's initialization, fine-tune each method's best step and
             the initialization itself (scratch) for --finetune-epochs, evaluating every
             --eval-every steps.
   finetune  pre-train both seeds for --pretrain-epochs on --pretrain-classes, fine-tune both for
             --epochs on --finetune-classes, transfer the source's fine-tuning onto the second
             pre-trained model, and fine-tune each best step and that model itself (direct).

The transfers run over the source's linear trajectory (its first and last checkpoints), as the
paper's MNIST experiments do. --source-trajectory and --target-trajectory reuse existing runs
(a folder of checkpoints one epoch apart, or the files separated by commas) instead of training
them. The data is MNIST from the GoMNIST Go module unless --data says otherwise; validation is
the last --val-fraction of the training set (in the finetune scenario, its fine-tuning classes).

--out receives experiment.csv (every evaluation), experiment.json (settings, runs, rows,
summary), experiment.png (accuracy against fine-tuning steps, and along the transfer) and the
runs' folders. The summary table is printed on stdout as Markdown.`

func experimentCommand() *cli.Command {
	return &cli.Command{
		Name:        "experiment",
		Usage:       "compare the transfer methods and fine-tuning from their results, with a table and plots",
		UsageText:   "ltransfer experiment [--scenario scratch|finetune] [options] --out DIR",
		Description: experimentDescription,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "scenario", Value: experiment.ScenarioScratch, Usage: "scratch or finetune"},
			&cli.StringFlag{Name: "arch", Value: "mlp:784,256,10", Usage: "architecture of the trained runs (see ltransfer init)"},
			&cli.Uint64Flag{Name: "source-seed", Value: 1, Usage: "seed of the source run's initialization and example order"},
			&cli.Uint64Flag{Name: "target-seed", Value: 2, Usage: "seed of the target run's initialization and example order"},
			&cli.StringFlag{Name: "source-trajectory", Usage: "reuse this source run (folder, or files separated by commas)"},
			&cli.StringFlag{Name: "target-trajectory", Usage: "reuse this target run (folder, or files separated by commas)"},
			&cli.IntFlag{Name: "epochs", Usage: "epochs of the source and target runs (the fine-tuning runs in the finetune scenario)", DefaultText: "10 for scratch, 3 for finetune"},
			&cli.IntFlag{Name: "pretrain-epochs", Value: 3, Usage: "pre-training epochs (finetune scenario)"},
			&cli.StringFlag{Name: "pretrain-classes", Value: "0,1,2,3,4", Usage: "pre-training classes (finetune scenario)"},
			&cli.StringFlag{Name: "finetune-classes", Value: "5,6,7,8,9", Usage: "fine-tuning classes (finetune scenario)"},
			&cli.BoolFlag{Name: "relabel", Usage: "map each class list to 0..k-1 (finetune scenario)"},
			&cli.StringFlag{Name: "methods", Value: "naive,fgmt,gmt,oracle", Usage: "transfer methods to compare"},
			&cli.IntFlag{Name: "steps", Value: 10, Usage: "interpolation steps of the transfer"},
			&cli.StringFlag{Name: "schedule", Value: string(convert.Cosine), Usage: "uniform or cosine spacing of the transfer's points"},
			&cli.IntFlag{Name: "grad-batches", Value: 1, Usage: "mini-batches per gradient of the transfer"},
			&cli.IntFlag{Name: "bn-batches", Value: 20, Usage: "batches to recompute BatchNorm statistics of every transfer step"},
			&cli.IntFlag{Name: "finetune-epochs", Value: 1, Usage: "epochs of fine-tuning after the transfer (0: none)"},
			&cli.IntFlag{Name: "eval-every", Value: 25, Usage: "evaluate the fine-tuning every N steps"},
			&cli.StringFlag{Name: "summary-steps", Value: "0,25,50,100,200,400", Usage: "fine-tuning steps shown in the summary"},
			&cli.IntFlag{Name: "batch", Value: 128, Usage: "mini-batch size"},
			&cli.Float64Flag{Name: "lr", Value: 0.01, Usage: "SGD learning rate"},
			&cli.Float64Flag{Name: "momentum", Value: 0.9, Usage: "SGD momentum"},
			&cli.Float64Flag{Name: "weight-decay", Usage: "SGD weight decay"},
			&cli.Uint64Flag{Name: "seed", Value: 1, Usage: "seed of the transfers and of the fine-tuning's example order"},
			&cli.StringFlag{Name: "data", Usage: "data: mnist:DIR, cifar10:DIR or npz:FILE", DefaultText: "MNIST from the GoMNIST module"},
			&cli.StringFlag{Name: "mean", Value: "0.1307", Usage: "per-channel mean subtracted after scaling bytes to [0,1] (comma-separated)"},
			&cli.StringFlag{Name: "std", Value: "0.3081", Usage: "per-channel standard deviation divided by (comma-separated)"},
			&cli.Float64Flag{Name: "val-fraction", Value: dataset.DefaultValFraction, Usage: "fraction of the training set held out for validation, from its end"},
			&cli.IntFlag{Name: "limit", Usage: "use only the first N training examples (after class selection)"},
			&cli.IntFlag{Name: "val-limit", Usage: "use only the first N validation examples (after class selection)"},
			&cli.StringFlag{Name: "out", Usage: "output folder (created; must be empty)"},
			&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "no progress output"},
			&cli.BoolFlag{Name: "json", Usage: "print experiment.json on stdout instead of the table"},
		},
		Before: positional(0, 0, "no arguments"),
		Action: runExperiment,
	}
}

// runExperiment reads the flags into experiment.Options, runs the experiment and prints
// its summary.
func runExperiment(c *cli.Context) error {
	if c.String("out") == "" {
		return usagef("--out is required")
	}
	opt := experiment.Options{
		Scenario: c.String("scenario"), Arch: c.String("arch"),
		SourceSeed: c.Uint64("source-seed"), TargetSeed: c.Uint64("target-seed"),
		SourceTrajectory: pathList(c.String("source-trajectory")), TargetTrajectory: pathList(c.String("target-trajectory")),
		Epochs: c.Int("epochs"), PretrainEpochs: c.Int("pretrain-epochs"), Relabel: c.Bool("relabel"),
		Methods: commaList(c.String("methods")), Steps: c.Int("steps"), Schedule: convert.Schedule(c.String("schedule")),
		GradBatches: c.Int("grad-batches"), NormBatches: c.Int("bn-batches"),
		FinetuneEpochs: c.Int("finetune-epochs"), EvalEvery: c.Int("eval-every"),
		Batch: c.Int("batch"), LR: c.Float64("lr"), Momentum: c.Float64("momentum"), WeightDecay: c.Float64("weight-decay"),
		Seed: c.Uint64("seed"), Data: c.String("data"), ValFraction: c.Float64("val-fraction"),
		Limit: c.Int("limit"), ValLimit: c.Int("val-limit"), Out: c.String("out"),
	}
	if !c.IsSet("epochs") {
		opt.Epochs = 10
		if opt.Scenario == experiment.ScenarioFinetune {
			opt.Epochs = 3
		}
	}
	var err error
	if opt.Scenario == experiment.ScenarioFinetune {
		if opt.PretrainClasses, err = intList(c.String("pretrain-classes")); err != nil {
			return err
		}
		if opt.FinetuneClasses, err = intList(c.String("finetune-classes")); err != nil {
			return err
		}
	}
	if opt.SummarySteps, err = intList(c.String("summary-steps")); err != nil {
		return err
	}
	if opt.Mean, err = floatList(c.String("mean")); err != nil {
		return err
	}
	if opt.Std, err = floatList(c.String("std")); err != nil {
		return err
	}
	if opt.Data == "" {
		dir, err := dataset.ModuleMNIST()
		if err != nil {
			return err
		}
		opt.Data = "mnist:" + dir
	}
	if err := opt.Check(); err != nil {
		return usageError{err}
	}
	stages := &stageProgress{p: newProgress(c.App.ErrWriter, c.Bool("quiet"))}
	opt.OnTrain = func(stage string, p train.Progress) { stages.enter(stage).train(p) }
	opt.OnStep = func(stage string, r convert.StepReport) { stages.enter(stage).step(r) }
	lowerGC()
	report, err := experiment.Run(c.Context, opt)
	stages.p.done()
	if err != nil {
		return err
	}
	if c.Bool("json") {
		return printJSON(c.App.Writer, report)
	}
	fmt.Fprint(c.App.Writer, report.Markdown())
	if !c.Bool("quiet") {
		fmt.Fprintf(c.App.ErrWriter, "experiment: %.1fs; wrote %s\n", report.Seconds, opt.Out)
	}
	return nil
}

// stageProgress shows the progress of the experiment's stages one after the other.
type stageProgress struct {
	p     *progress
	stage string
}

// enter returns the progress display of stage, starting it when the stage changes.
func (s *stageProgress) enter(stage string) *progress {
	if stage != s.stage {
		if s.stage != "" {
			s.p.done()
		}
		s.p.start(stage)
		s.stage = stage
	}
	return s.p
}
