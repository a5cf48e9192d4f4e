package models

import (
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	cases := []struct{ spec, want string }{
		{"mlp:784,4096,10", "mlp:784,4096,10;act=relu;bias=true;in=1x28x28"},
		{"mlp:784,4096,10;act=none;bias=false", "mlp:784,4096,10;act=none;bias=false;in=1x28x28"},
		{" mlp : 20, 8 ,3 ; act = tanh ", "mlp:20,8,3;act=tanh;bias=true;in=20"},
		{"mlp:3072,512,10;in=3x32x32", "mlp:3072,512,10;act=relu;bias=true;in=3x32x32"},
		{"mlp:784,10;in=784", "mlp:784,10;act=relu;bias=true;in=784"},
		{"convnet:16,32;in=1x28x28;classes=10", "convnet:16,32;in=1x28x28;classes=10;pool=2;head=flatten"},
		{"convnet:64,64,128,128,256,256,512,512", "convnet:64,64,128,128,256,256,512,512;in=3x32x32;classes=10;pool=2;head=flatten"},
		{"convnet:8;head=gap;pool=0;classes=100", "convnet:8;in=3x32x32;classes=100;pool=0;head=gap"},
		{"resnet:8,16;blocks=1;in=1x28x28;classes=10", "resnet:8,16;blocks=1;in=1x28x28;classes=10"},
		{"resnet:16,32,64", "resnet:16,32,64;blocks=2;in=3x32x32;classes=10"},
		{"resnet:16,32,64;blocks=3,3,3", "resnet:16,32,64;blocks=3;in=3x32x32;classes=10"},
		{"resnet:16,32;blocks=2,1", "resnet:16,32;blocks=2,1;in=3x32x32;classes=10"},
	}
	for _, c := range cases {
		a, err := Parse(c.spec)
		if err != nil {
			t.Errorf("Parse(%q): %v", c.spec, err)
			continue
		}
		if got := a.String(); got != c.want {
			t.Errorf("Parse(%q) = %s, want %s", c.spec, got, c.want)
		}
		b, err := Parse(a.String())
		if err != nil || b.String() != a.String() {
			t.Errorf("Parse(%q) = %v, %v: does not read its own spec back", a.String(), b, err)
		}
	}
}

func TestParseErrors(t *testing.T) {
	cases := []struct{ spec, want string }{
		{"", "want ARCH:WIDTHS"},
		{"mlp", "want ARCH:WIDTHS"},
		{"vgg:64,64", `unknown architecture "vgg"`},
		{"mlp:", `mlp: widths "": empty list`},
		{"mlp:784", `mlp: widths "784": want at least 2`},
		{"mlp:784,0,10", `mlp: widths "784,0,10": 0 is not positive`},
		{"mlp:784,x,10", `mlp: widths "784,x,10": "x" is not an integer`},
		{"mlp:784,10;act=gelu", "mlp: option act=gelu: want relu, tanh, sigmoid or none"},
		{"mlp:784,10;bias=maybe", "mlp: option bias=maybe: want true or false"},
		{"mlp:784,10;in=1x28x27", "mlp: input shape 1x28x27 has 756 features, the first width is 784"},
		{"mlp:100,10", ""}, // valid: in defaults to 100
		{"mlp:784,10;classes=10", `mlp: unknown option "classes" (want act, bias, in)`},
		{"mlp:784,10;act=relu;act=tanh", `mlp: option "act" is given twice`},
		{"mlp:784,10;act", `mlp: option "act": want KEY=VALUE`},
		{"mlp:784,10;", `mlp: option "": want KEY=VALUE`},
		{"convnet:8;in=28x28", "convnet: input shape 28x28: want CxHxW"},
		{"convnet:8;classes=0", "convnet: option classes=0: want a positive integer"},
		{"convnet:8;pool=-1", "convnet: option pool=-1: want a number of convolutions"},
		{"convnet:8;head=avg", "convnet: option head=avg: want flatten or gap"},
		{"convnet:8,8,8,8,8,8,8,8,8,8;in=1x28x28", "convnet: the MaxPool after conv10 would halve a 1x1 feature map"},
		{"resnet:8,16;blocks=1,2,3", "resnet: 3 block counts for 2 stages"},
		{"resnet:8;blocks=0", `resnet: option blocks=0: 0 is not positive`},
		{"resnet:8;in=1x0x28", "resnet: option in=1x0x28: 0 is not positive"},
	}
	for _, c := range cases {
		_, err := Parse(c.spec)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("Parse(%q): %v", c.spec, err)
		case c.want == "":
		case err == nil:
			t.Errorf("Parse(%q) succeeded, want an error containing %q", c.spec, c.want)
		case !strings.HasPrefix(err.Error(), "models: ") || !strings.Contains(err.Error(), c.want):
			t.Errorf("Parse(%q): %q, want models: ...%s...", c.spec, err, c.want)
		}
	}
}

// TestNewChecksStructs: architectures built as struct literals are checked as parsed ones are.
func TestNewChecksStructs(t *testing.T) {
	for _, a := range []Architecture{
		&MLP{Widths: []int{784, 10}},                                     // no activation set
		&MLP{Widths: []int{784, -3, 10}, Activation: ReLU},               // negative width
		&ConvNet{Widths: []int{8}, Input: []int{1, 8, 8}, Head: HeadGAP}, // no classes
		&ResNet{Widths: []int{8}, Input: []int{1, 8, 8}, Classes: 2},     // no blocks
	} {
		if _, err := New(a, 1); err == nil || !strings.HasPrefix(err.Error(), "models: ") {
			t.Errorf("New(%s) = %v, want a models: error", a, err)
		}
	}
}
