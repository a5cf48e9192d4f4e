package main

import (
	"fmt"
	"math/rand/v2"
	"path/filepath"

	"github.com/urfave/cli/v2"

	"github.com/ltransfer/ltransfer/align"
	"github.com/ltransfer/ltransfer/graph"
)

func permuteCommand() *cli.Command {
	return &cli.Command{
		Name:      "permute",
		Usage:     "write the model permuted by a random permutation of its symmetries (a functionally identical model)",
		ArgsUsage: "MODEL.onnx",
		Flags: []cli.Flag{
			&cli.Uint64Flag{Name: "seed", Value: 1, Usage: "seed of the permutation"},
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Required: true, Usage: "output ONNX file"},
		},
		Before: positional(1, 1, "one model file"),
		Action: func(c *cli.Context) error {
			in, out := c.Args().First(), c.String("output")
			if a, b := filepath.Clean(in), filepath.Clean(out); a == b {
				return usagef("the output %s would overwrite the input", out)
			}
			m, err := graph.Load(in)
			if err != nil {
				return err
			}
			spec, _, err := graph.Symmetries(m)
			if err != nil {
				return err
			}
			perm := align.Random(spec, rand.New(rand.NewPCG(c.Uint64("seed"), 0)))
			permuted, err := perm.Apply(spec, m.Params)
			if err != nil {
				return err
			}
			if err := m.Save(out, permuted); err != nil {
				return err
			}
			fmt.Fprintf(c.App.ErrWriter, "permuted %d groups of %s into %s\n", len(spec.Groups), in, out)
			return nil
		},
	}
}
