package main

import (
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/ltransfer/ltransfer/convert/dataset"
)

// dataFlags are the options that select and preprocess examples, shared by every command that
// reads data.
func dataFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "data", Usage: "training data: mnist:DIR, cifar10:DIR or npz:FILE"},
		&cli.StringFlag{Name: "val-data", Usage: "validation data (default: the last --val-fraction of --data's training set)"},
		&cli.Float64Flag{Name: "val-fraction", Value: dataset.DefaultValFraction, Usage: "fraction of the training set held out for validation, from its end"},
		&cli.StringFlag{Name: "mean", Usage: "per-channel mean subtracted after scaling bytes to [0,1] (comma-separated)"},
		&cli.StringFlag{Name: "std", Usage: "per-channel standard deviation divided by (comma-separated)"},
		&cli.IntFlag{Name: "limit", Usage: "use only the first N training examples"},
		&cli.IntFlag{Name: "val-limit", Usage: "use only the first N validation examples"},
		&cli.StringFlag{Name: "classes", Usage: "keep only these labels (comma-separated)"},
		&cli.BoolFlag{Name: "relabel", Usage: "map the --classes labels to 0..k-1"},
	}
}

func floatList(s string) ([]float32, error) {
	if s == "" {
		return nil, nil
	}
	var out []float32
	for _, f := range strings.Split(s, ",") {
		v, err := strconv.ParseFloat(strings.TrimSpace(f), 32)
		if err != nil {
			return nil, usagef("%q is not a number", f)
		}
		out = append(out, float32(v))
	}
	return out, nil
}

func intList(s string) ([]int, error) {
	if s == "" {
		return nil, nil
	}
	var out []int
	for _, f := range strings.Split(s, ",") {
		v, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			return nil, usagef("%q is not an integer", f)
		}
		out = append(out, v)
	}
	return out, nil
}

// dataOptions reads the preprocessing and selection flags.
func dataOptions(c *cli.Context) (dataset.Options, error) {
	opt := dataset.Options{ValFraction: c.Float64("val-fraction"), Relabel: c.Bool("relabel"), Limit: c.Int("limit")}
	var err error
	if opt.Mean, err = floatList(c.String("mean")); err != nil {
		return opt, err
	}
	if opt.Std, err = floatList(c.String("std")); err != nil {
		return opt, err
	}
	opt.Classes, err = intList(c.String("classes"))
	return opt, err
}

func dataSpec(c *cli.Context) (string, error) {
	if spec := c.String("data"); spec != "" {
		return spec, nil
	}
	return "", usagef("--data is required (mnist:DIR, cifar10:DIR or npz:FILE)")
}

// openSplit opens one split of --data.
func openSplit(c *cli.Context, split dataset.Split) (dataset.Source, error) {
	spec, err := dataSpec(c)
	if err != nil {
		return nil, err
	}
	opt, err := dataOptions(c)
	if err != nil {
		return nil, err
	}
	opt.Split = split
	return dataset.Open(spec, opt)
}

// openData opens the training and validation sources the data flags describe: the validation
// set is --val-data (its test split), or the held-out end of --data's training set.
func openData(c *cli.Context) (train, val dataset.Source, err error) {
	if train, err = openSplit(c, dataset.SplitTrain); err != nil {
		return nil, nil, err
	}
	opt, err := dataOptions(c)
	if err != nil {
		return nil, nil, err
	}
	opt.Limit = c.Int("val-limit")
	opt.Split = dataset.SplitVal
	valSpec, _ := dataSpec(c)
	if v := c.String("val-data"); v != "" {
		valSpec, opt.Split = v, dataset.SplitTest
	}
	if val, err = dataset.Open(valSpec, opt); err != nil {
		return nil, nil, err
	}
	return train, val, nil
}

// fixtureMNIST opens the training and validation splits of MNIST normalised as the shipped
// fixtures were trained (mean 0.1307, std 0.3081): spec, or the GoMNIST module's files when spec
// is empty. It returns the spec it used.
func fixtureMNIST(spec string) (train, val dataset.Source, used string, err error) {
	if spec == "" {
		dir, err := dataset.ModuleMNIST()
		if err != nil {
			return nil, nil, "", err
		}
		spec = "mnist:" + dir
	}
	norm := dataset.Options{Mean: []float32{0.1307}, Std: []float32{0.3081}, Split: dataset.SplitTrain}
	if train, err = dataset.Open(spec, norm); err != nil {
		return nil, nil, "", err
	}
	norm.Split = dataset.SplitVal
	if val, err = dataset.Open(spec, norm); err != nil {
		return nil, nil, "", err
	}
	return train, val, spec, nil
}
