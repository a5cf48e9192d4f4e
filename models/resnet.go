package models

import "fmt"

// ResNet is a residual network of basic blocks, named as torchvision names its ResNets.
//
// The stem is a 3x3 convolution to Widths[0] channels (conv1), BatchNorm (bn1) and ReLU. Stage s
// (layer1, layer2, ...) has Blocks[s] basic blocks of Widths[s] channels; block b of stage s
// (layerS.B) is conv1 (3x3) - bn1 - ReLU - conv2 (3x3) - bn2, added to the shortcut and passed
// through ReLU. The first block of every stage but the first has stride 2, and a block whose
// stride or channel count changes has a projection shortcut: a 1x1 convolution with that stride
// (downsample.0) and BatchNorm (downsample.1); other shortcuts are the identity. Convolutions
// have no bias. The head is GlobalAveragePool, Flatten and a Linear layer "fc" to the classes.
// ResNet-20 for CIFAR-10 is resnet:16,32,64;blocks=3;in=3x32x32;classes=10.
type ResNet struct {
	// Widths are the channels of the stages; the stem has Widths[0].
	Widths []int
	// Blocks is the number of basic blocks of each stage, or one number for every stage.
	Blocks []int
	// Input is the image shape C x H x W.
	Input []int
	// Classes is the number of outputs.
	Classes int
}

// String returns the ResNet's spec, such as resnet:8,16;blocks=1;in=1x28x28;classes=10.
func (a *ResNet) String() string {
	blocks := a.Blocks
	if len(blocks) > 1 && allEqual(blocks) {
		blocks = blocks[:1]
	}
	return fmt.Sprintf("resnet:%s;blocks=%s;in=%s;classes=%d", joinInts(a.Widths, ","), joinInts(blocks, ","), joinInts(a.Input, "x"), a.Classes)
}

func allEqual(v []int) bool {
	for _, x := range v {
		if x != v[0] {
			return false
		}
	}
	return true
}

func (a *ResNet) options() []string { return []string{"blocks", "in", "classes"} }

func (a *ResNet) set(key, value string) error {
	var err error
	switch key {
	case "blocks":
		a.Blocks, err = parseInts(value)
	case "in":
		a.Input, err = parseShape(value)
	case "classes":
		a.Classes, err = parsePositive(value)
	}
	return err
}

// blocks returns the number of blocks of each stage.
func (a *ResNet) blocks() ([]int, error) {
	switch len(a.Blocks) {
	case 1:
		out := make([]int, len(a.Widths))
		for i := range out {
			out[i] = a.Blocks[0]
		}
		return out, nil
	case len(a.Widths):
		return a.Blocks, nil
	}
	return nil, fmt.Errorf("models: resnet: %d block counts for %d stages: give one count, or one per stage", len(a.Blocks), len(a.Widths))
}

func (a *ResNet) emit(e *emitter) error {
	if err := checkWidths("resnet", a.Widths, 1); err != nil {
		return err
	}
	blocks, err := a.blocks()
	if err != nil {
		return err
	}
	for s, n := range blocks {
		if n < 1 {
			return fmt.Errorf("models: resnet: stage %d has %d blocks, want at least 1", s+1, n)
		}
	}
	if err := checkImage("resnet", a.Input); err != nil {
		return err
	}
	if a.Classes < 1 {
		return fmt.Errorf("models: resnet: %d classes, want at least 1", a.Classes)
	}
	x := e.io(a.Input, a.Classes)
	x = e.conv("conv1", x, a.Input[0], a.Widths[0], 3, 1, 1)
	x = e.batchNorm("bn1", x, a.Widths[0])
	x = e.node("Relu", "relu", "relu", []string{x})
	c := a.Widths[0]
	for s, width := range a.Widths {
		for b := 0; b < blocks[s]; b++ {
			stride := 1
			if s > 0 && b == 0 {
				stride = 2
			}
			x = e.basicBlock(fmt.Sprintf("layer%d.%d", s+1, b), x, c, width, stride)
			c = width
		}
	}
	x = e.node("GlobalAveragePool", "avgpool", "avgpool", []string{x})
	x = e.flatten("flatten", x)
	e.linear("fc", x, OutputName, c, a.Classes, true)
	return nil
}

// basicBlock adds relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)).
func (e *emitter) basicBlock(p, x string, in, out, stride int) string {
	y := e.conv(p+".conv1", x, in, out, 3, stride, 1)
	y = e.batchNorm(p+".bn1", y, out)
	y = e.node("Relu", p+".relu1", p+".relu1", []string{y})
	y = e.conv(p+".conv2", y, out, out, 3, 1, 1)
	y = e.batchNorm(p+".bn2", y, out)
	shortcut := x
	if stride != 1 || in != out {
		shortcut = e.conv(p+".downsample.0", x, in, out, 1, stride, 0)
		shortcut = e.batchNorm(p+".downsample.1", shortcut, out)
	}
	y = e.node("Add", p+".add", p+".add", []string{y, shortcut})
	return e.node("Relu", p+".relu2", p+".relu2", []string{y})
}
