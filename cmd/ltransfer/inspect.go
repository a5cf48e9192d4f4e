package main

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/ltransfer/ltransfer/graph"
)

func inspectCommand() *cli.Command {
	return &cli.Command{
		Name:      "inspect",
		Usage:     "describe an ONNX model: opset, inputs, outputs, operators and parameters",
		ArgsUsage: "MODEL.onnx",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "json", Usage: "print the description as JSON"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return usagef("inspect takes one model file, got %d arguments", c.NArg())
			}
			m, err := graph.Load(c.Args().First())
			if err != nil {
				return err
			}
			s := m.Summarize()
			if c.Bool("json") {
				enc := json.NewEncoder(c.App.Writer)
				enc.SetIndent("", "  ")
				return enc.Encode(s)
			}
			return printSummary(c.App.Writer, s)
		},
	}
}

func printSummary(w io.Writer, s graph.Summary) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "model\t%s\n", s.Path)
	fmt.Fprintf(tw, "opset\t%d\n", s.Opset)
	for _, in := range s.Inputs {
		fmt.Fprintf(tw, "input\t%s %s\n", in.Name, shapeString(in.Shape))
	}
	for _, out := range s.Outputs {
		fmt.Fprintf(tw, "output\t%s %s\n", out.Name, shapeString(out.Shape))
	}
	ops := make([]string, 0, len(s.Ops))
	for op, n := range s.Ops {
		ops = append(ops, fmt.Sprintf("%s x%d", op, n))
	}
	sort.Strings(ops)
	fmt.Fprintf(tw, "operators\t%s\n", strings.Join(ops, ", "))
	if len(s.Unsupported) > 0 {
		fmt.Fprintf(tw, "unsupported\t%s (the model cannot be run)\n", strings.Join(s.Unsupported, ", "))
	}
	fmt.Fprintf(tw, "trainable values\t%d\n\n", s.ParamCount)
	fmt.Fprintf(tw, "PARAMETER\tSHAPE\tCOUNT\tROLE\tTRAINABLE\n")
	for _, p := range s.Params {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%v\n", p.Name, shapeString(p.Shape), p.Count, p.Role, p.Trainable)
	}
	return tw.Flush()
}

func shapeString(shape []int) string {
	parts := make([]string, len(shape))
	for i, d := range shape {
		if d < 0 {
			parts[i] = "N"
		} else {
			parts[i] = fmt.Sprint(d)
		}
	}
	return "[" + strings.Join(parts, " x ") + "]"
}
