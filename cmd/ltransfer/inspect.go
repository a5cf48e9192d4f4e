package main

import (
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/ltransfer/ltransfer/align"
	"github.com/ltransfer/ltransfer/graph"
)

func inspectCommand() *cli.Command {
	return &cli.Command{
		Name:      "inspect",
		Usage:     "describe an ONNX model: opset, inputs, outputs, operators and parameters",
		ArgsUsage: "MODEL.onnx",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "json", Usage: "print the description as JSON"},
			&cli.BoolFlag{Name: "verify", Usage: "check every permutation group on the model itself and drop the ones that change its outputs"},
			&cli.Uint64Flag{Name: "seed", Value: 1, Usage: "seed of the --verify permutations and inputs"},
		},
		Before: positional(1, 1, "one model file"),
		Action: func(c *cli.Context) error {
			m, err := graph.Load(c.Args().First())
			if err != nil {
				return err
			}
			var spec align.Spec
			var unpermuted []graph.Unpermuted
			var dropped []graph.Dropped
			// The symmetries need shapes only; a model the engine cannot run may still have them.
			if spec, unpermuted, err = graph.Symmetries(m); err != nil && !errors.Is(err, graph.ErrUnsupported) {
				return err
			}
			if c.Bool("verify") {
				if err := m.CheckSupported(); err != nil {
					fmt.Fprintf(c.App.ErrWriter, "ltransfer: inspect: the groups are not verified, the model cannot be run: %v\n", err)
				} else if spec, dropped, err = graph.VerifySymmetries(m, spec, c.Uint64("seed")); err != nil {
					return err
				}
			}
			s := m.Summarize(spec, unpermuted)
			s.Dropped = dropped
			if c.Bool("json") {
				return printJSON(c.App.Writer, s)
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
	fmt.Fprintf(tw, "\nGROUP\tSIZE\tMEMBERS\n")
	for _, g := range s.Groups {
		var members []string
		for _, mb := range g.Members {
			m := fmt.Sprintf("%s/%d", mb.Param, mb.Axis)
			if mb.Offset > 0 {
				m += fmt.Sprintf("[from %d]", mb.Offset)
			}
			if mb.Block > 1 {
				m += fmt.Sprintf("(blocks of %d)", mb.Block)
			}
			if mb.Repeat > 1 {
				m += fmt.Sprintf("(x%d copies)", mb.Repeat)
			}
			members = append(members, m)
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\n", g.Name, g.Size, strings.Join(members, " "))
	}
	for _, d := range s.Dropped {
		fmt.Fprintf(tw, "dropped\t%s\tpermuting it changed the outputs by %.3g\n", d.Group, d.MaxDiff)
	}
	if len(s.Unpermuted) > 0 {
		fmt.Fprintf(tw, "\nUNPERMUTED\tAXIS\tREASON\n")
		for _, u := range s.Unpermuted {
			fmt.Fprintf(tw, "%s\t%d\t%s\n", u.Param, u.Axis, u.Reason)
		}
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
