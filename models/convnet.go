package models

import (
	"fmt"
	"strconv"
)

// Head is how a ConvNet turns its last feature map into class scores.
type Head string

// The heads of a ConvNet.
const (
	// HeadFlatten flattens the C x H x W feature map into C*H*W features for the final Linear.
	HeadFlatten Head = "flatten"
	// HeadGAP averages each channel over the feature map (GlobalAveragePool) first, leaving C
	// features.
	HeadGAP Head = "gap"
)

// ConvNet is a plain VGG-style convolutional network like the Conv8 of the trajectory-transfer
// paper's CIFAR-10 experiments: for each width, a 3x3 convolution with padding
// 1 and no bias (convI, nn.Conv2d(bias=False): BatchNorm makes a bias redundant), BatchNorm (bnI)
// and ReLU (reluI); MaxPool(2) (poolJ) after every PoolEvery-th convolution; then the head and a
// Linear layer "fc" to the classes. Conv8 on CIFAR-10 is
// convnet:64,64,128,128,256,256,512,512;in=3x32x32;classes=10.
type ConvNet struct {
	// Widths are the output channels of the convolutions.
	Widths []int
	// Input is the image shape C x H x W.
	Input []int
	// Classes is the number of outputs.
	Classes int
	// PoolEvery puts a MaxPool(2) after every PoolEvery-th convolution; 0 means none.
	PoolEvery int
	// Head turns the last feature map into the features of the final Linear layer.
	Head Head
}

// String returns the ConvNet's spec, such as convnet:16,32;in=1x28x28;classes=10;pool=2;head=flatten.
func (a *ConvNet) String() string {
	return fmt.Sprintf("convnet:%s;in=%s;classes=%d;pool=%d;head=%s", joinInts(a.Widths, ","), joinInts(a.Input, "x"), a.Classes, a.PoolEvery, a.Head)
}

func (a *ConvNet) options() []string { return []string{"in", "classes", "pool", "head"} }

func (a *ConvNet) set(key, value string) error {
	var err error
	switch key {
	case "in":
		a.Input, err = parseShape(value)
	case "classes":
		a.Classes, err = parsePositive(value)
	case "pool":
		if a.PoolEvery, err = strconv.Atoi(value); err != nil || a.PoolEvery < 0 {
			return fmt.Errorf("want a number of convolutions, or 0 for no pooling")
		}
	case "head":
		if a.Head = Head(value); a.Head != HeadFlatten && a.Head != HeadGAP {
			return fmt.Errorf("want flatten or gap")
		}
	}
	return err
}

func (a *ConvNet) emit(e *emitter) error {
	if err := checkWidths("convnet", a.Widths, 1); err != nil {
		return err
	}
	if err := checkImage("convnet", a.Input); err != nil {
		return err
	}
	if a.Classes < 1 {
		return fmt.Errorf("models: convnet: %d classes, want at least 1", a.Classes)
	}
	if a.PoolEvery < 0 {
		return fmt.Errorf("models: convnet: pooling after every %d convolutions, want 0 (none) or more", a.PoolEvery)
	}
	if a.Head != HeadFlatten && a.Head != HeadGAP {
		return fmt.Errorf("models: convnet: head %q: want flatten or gap", a.Head)
	}
	x := e.io(a.Input, a.Classes)
	c, h, w := a.Input[0], a.Input[1], a.Input[2]
	pools := 0
	for i, width := range a.Widths {
		n := i + 1
		x = e.conv(fmt.Sprintf("conv%d", n), x, c, width, 3, 1, 1)
		x = e.batchNorm(fmt.Sprintf("bn%d", n), x, width)
		x = e.node("Relu", fmt.Sprintf("relu%d", n), fmt.Sprintf("relu%d", n), []string{x})
		c = width
		if a.PoolEvery > 0 && n%a.PoolEvery == 0 {
			if h < 2 || w < 2 {
				return fmt.Errorf("models: convnet: the MaxPool after conv%d would halve a %dx%d feature map: use fewer convolutions, a larger pool interval or a larger input", n, h, w)
			}
			pools++
			name := fmt.Sprintf("pool%d", pools)
			x = e.node("MaxPool", name, name, []string{x},
				attrInts("kernel_shape", 2, 2), attrInts("strides", 2, 2))
			h, w = h/2, w/2
		}
	}
	features := c * h * w
	if a.Head == HeadGAP {
		x = e.node("GlobalAveragePool", "gap", "gap", []string{x})
		features = c
	}
	x = e.flatten("flatten", x)
	e.linear("fc", x, OutputName, features, a.Classes, true)
	return nil
}
