package main

import (
	"fmt"
	"path/filepath"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/ltransfer/ltransfer/convert"
	"github.com/ltransfer/ltransfer/convert/dataset"
	"github.com/ltransfer/ltransfer/graph"
)

// evalResult is one model's score, as `eval --json` prints it.
type evalResult struct {
	Model string `json:"model"`
	convert.Score
	Examples    int   `json:"examples"`
	Predictions []int `json:"predictions,omitempty"`
}

func evalCommand() *cli.Command {
	return &cli.Command{
		Name:      "eval",
		Usage:     "accuracy and loss of ONNX models on a data set",
		ArgsUsage: "MODEL.onnx...",
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "split", Value: "val", Usage: "train, val or test"},
			&cli.IntFlag{Name: "batch", Value: 256, Usage: "evaluation batch size"},
			&cli.BoolFlag{Name: "json", Usage: "print the results as JSON"},
			&cli.BoolFlag{Name: "predictions", Usage: "with --json, include every example's predicted class"},
		}, dataFlags()...),
		Before: positional(1, -1, "at least one model file"),
		Action: func(c *cli.Context) error {
			train, val, err := openData(c)
			if err != nil {
				return err
			}
			data := val
			switch c.String("split") {
			case "train":
				data = train
			case "test":
				if data, err = openSplit(c, dataset.SplitTest); err != nil {
					return err
				}
			case "val":
			default:
				return usagef("--split %q: want train, val or test", c.String("split"))
			}
			var results []evalResult
			for _, path := range c.Args().Slice() {
				m, err := graph.Load(path)
				if err != nil {
					return err
				}
				var preds []int
				if c.Bool("predictions") {
					preds = make([]int, data.Len())
				}
				score, err := convert.Evaluate(m, nil, data, c.Int("batch"), preds)
				if err != nil {
					return fmt.Errorf("%s: %w", path, err)
				}
				results = append(results, evalResult{Model: path, Score: score, Examples: data.Len(), Predictions: preds})
			}
			if c.Bool("json") {
				return printJSON(c.App.Writer, results)
			}
			tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
			fmt.Fprintf(tw, "MODEL\tACCURACY\tLOSS\tEXAMPLES\n")
			for _, r := range results {
				fmt.Fprintf(tw, "%s\t%.2f%%\t%.4f\t%d\n", filepath.Clean(r.Model), 100*r.Accuracy, r.Loss, r.Examples)
			}
			return tw.Flush()
		},
	}
}
