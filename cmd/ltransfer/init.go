package main

import (
	"fmt"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/ltransfer/ltransfer/graph"
	"github.com/ltransfer/ltransfer/models"
)

const initDescription = `Writes a model with PyTorch's default initialization drawn from --seed: weights and biases
uniform within ±1/sqrt(fan_in), BatchNorm scale 1 and bias 0, running mean 0 and variance 1.

With --model, a built-in architecture given by a spec ARCH:WIDTHS[;KEY=VALUE...]:

   mlp:784,4096,10                 layer widths from input features to classes
        act=relu|tanh|sigmoid|none  (relu)   bias=true|false (true)
        in=1x28x28                  example shape (1x28x28 when the first width is 784)
   convnet:64,64,128,128           3x3 conv-BN-ReLU channels, MaxPool(2) after every pool-th
        in=3x32x32 classes=10 pool=2 head=flatten|gap
   resnet:16,32,64                 basic-block stage widths, stride 2 from the second stage
        blocks=2 (or one count per stage) in=3x32x32 classes=10

Separate the options with ';' and quote the spec in the shell, as in
   ltransfer init --model 'mlp:784,256,10;act=none;bias=false' --seed 1 -o init.onnx

With --from, the given ONNX model with every parameter drawn anew and everything else
(operators, names, opset, metadata) unchanged.`

func initCommand() *cli.Command {
	return &cli.Command{
		Name:        "init",
		Usage:       "write a freshly initialized model: a built-in architecture, or an ONNX model's parameters redrawn",
		UsageText:   "ltransfer init (--model SPEC | --from MODEL.onnx) --seed N -o FILE.onnx",
		Description: initDescription,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "model", Usage: "built-in architecture spec, such as mlp:784,4096,10"},
			&cli.StringFlag{Name: "from", Usage: "ONNX model whose parameters are redrawn"},
			&cli.Uint64Flag{Name: "seed", Usage: "seed of the initialization", DefaultText: "none, required"},
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "the ONNX file to write (required)"},
		},
		Before: positional(0, 0, "no arguments"),
		Action: func(c *cli.Context) error {
			spec, from, out := c.String("model"), c.String("from"), c.String("output")
			switch {
			case (spec == "") == (from == ""):
				return usagef("init needs exactly one of --model SPEC and --from MODEL.onnx")
			case !c.IsSet("seed"):
				return usagef("init needs --seed")
			case out == "":
				return usagef("init needs -o FILE.onnx")
			}
			seed := c.Uint64("seed")
			if spec != "" {
				arch, err := models.Parse(spec)
				if err != nil {
					return usageError{fmt.Errorf("--model: %w", err)}
				}
				m, err := models.New(arch, seed)
				if err != nil {
					return err
				}
				if err := m.Save(out, nil); err != nil {
					return err
				}
				fmt.Fprintf(c.App.ErrWriter, "wrote %s: %s, seed %d, %d trainable values\n", out, arch, seed, m.ParamCount())
				return nil
			}
			if sameFile(from, out) {
				return usagef("-o %s is the input model: write the new initialization to another file", out)
			}
			m, err := graph.Load(from)
			if err != nil {
				return err
			}
			params, err := models.Reinit(m, seed)
			if err != nil {
				return fmt.Errorf("%s: %w", from, err)
			}
			if err := m.Save(out, params); err != nil {
				return err
			}
			fmt.Fprintf(c.App.ErrWriter, "wrote %s: %s with its parameters drawn anew, seed %d, %d trainable values\n", out, from, seed, m.ParamCount())
			return nil
		},
	}
}

// sameFile reports whether both paths name one existing file (also through links or another
// spelling of the path).
func sameFile(a, b string) bool {
	fa, err := os.Stat(a)
	if err != nil {
		return false
	}
	fb, err := os.Stat(b)
	return err == nil && os.SameFile(fa, fb)
}
