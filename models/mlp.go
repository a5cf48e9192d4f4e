package models

import (
	"fmt"
	"strconv"
)

// Activation is the nonlinearity between an MLP's layers.
type Activation string

// The activations of an MLP.
const (
	ReLU         Activation = "relu"
	Tanh         Activation = "tanh"
	Sigmoid      Activation = "sigmoid"
	NoActivation Activation = "none" // the network is linear
)

var activationOps = map[Activation]string{ReLU: "Relu", Tanh: "Tanh", Sigmoid: "Sigmoid", NoActivation: ""}

// MLP is a multilayer perceptron: fully connected layers fc1, fc2, ... (nn.Linear, exported as
// Gemm with transB=1, weights [out, in] named fcI.weight, biases fcI.bias), with Activation
// between them (nodes actI) and none after the last. An input of more than one axis is
// flattened first (node "flatten"), as MNIST models read N x 1 x 28 x 28 images.
type MLP struct {
	// Widths are the layer widths, input features first and classes last: 784,256,10 has one
	// hidden layer of 256 units.
	Widths []int
	// Input is the shape of one example; its product must be Widths[0]. Nil means
	// [1, 28, 28] when Widths[0] is 784, else [Widths[0]].
	Input []int
	// Activation follows every layer but the last.
	Activation Activation
	// Bias adds a bias to every layer.
	Bias bool
}

// String returns the MLP's spec, such as mlp:784,256,10;act=relu;bias=true;in=1x28x28.
func (a *MLP) String() string {
	return fmt.Sprintf("mlp:%s;act=%s;bias=%t;in=%s", joinInts(a.Widths, ","), a.Activation, a.Bias, joinInts(a.input(), "x"))
}

func (a *MLP) options() []string { return []string{"act", "bias", "in"} }

func (a *MLP) set(key, value string) error {
	var err error
	switch key {
	case "act":
		if _, ok := activationOps[Activation(value)]; !ok {
			return fmt.Errorf("want relu, tanh, sigmoid or none")
		}
		a.Activation = Activation(value)
	case "bias":
		if a.Bias, err = strconv.ParseBool(value); err != nil {
			return fmt.Errorf("want true or false")
		}
	case "in":
		a.Input, err = parseShape(value)
	}
	return err
}

func (a *MLP) input() []int {
	switch {
	case a.Input != nil:
		return a.Input
	case len(a.Widths) > 0 && a.Widths[0] == 28*28:
		return []int{1, 28, 28}
	case len(a.Widths) > 0:
		return []int{a.Widths[0]}
	}
	return nil
}

func (a *MLP) emit(e *emitter) error {
	if err := checkWidths("mlp", a.Widths, 2); err != nil {
		return err
	}
	act, ok := activationOps[a.Activation]
	if !ok {
		return fmt.Errorf("models: mlp: activation %q: want relu, tanh, sigmoid or none", a.Activation)
	}
	in := a.input()
	features := 1
	for _, d := range in {
		if d < 1 {
			return fmt.Errorf("models: mlp: input shape %v has a size below 1", in)
		}
		features *= d
	}
	if features != a.Widths[0] {
		return fmt.Errorf("models: mlp: input shape %s has %d features, the first width is %d", joinInts(in, "x"), features, a.Widths[0])
	}
	last := len(a.Widths) - 1
	x := e.io(in, a.Widths[last])
	if len(in) > 1 {
		x = e.flatten("flatten", x)
	}
	for i := 1; i <= last; i++ {
		name := fmt.Sprintf("fc%d", i)
		out := name
		if i == last {
			out = OutputName
		}
		x = e.linear(name, x, out, a.Widths[i-1], a.Widths[i], a.Bias)
		if i < last && act != "" {
			x = e.node(act, fmt.Sprintf("act%d", i), fmt.Sprintf("act%d", i), []string{x})
		}
	}
	return nil
}
