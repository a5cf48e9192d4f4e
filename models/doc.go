// Package models builds ltransfer's built-in architectures as ONNX models and draws
// initializations as PyTorch does, for built-in models and for any ONNX model.
//
// # Architectures
//
// MLP, ConvNet and ResNet describe the three families; Parse reads them from a spec string,
//
//	mlp:784,4096,10;act=none;bias=false
//	convnet:64,64,128,128,256,256,512,512;in=3x32x32;classes=10
//	resnet:16,32,64;blocks=3;in=3x32x32;classes=10
//
// and New emits one through graph.Builder (opset 17) with parameters drawn from a seed. Every
// model reads the float32 input "input" of shape [N, in...] (N symbolic) and writes the logits
// "logits", [N, classes]; parameter names follow PyTorch's state_dict names.
//
// # Initialization
//
// Reinit draws every float32 initializer of a model by its role in the graph (graph.Role), as
// a freshly constructed torch.nn module initializes itself:
//
//	weight of a Conv, Gemm or MatMul   U(-1/sqrt(fan_in), +1/sqrt(fan_in))
//	bias of such a layer               U(-1/sqrt(fan_in), +1/sqrt(fan_in)), fan_in of its weight
//	BatchNormalization scale, bias     1, 0
//	running mean, running variance     0, 1
//	any other initializer              kept as it is
//
// The weight law is torch's kaiming_uniform_(w, a=sqrt(5)), the default of nn.Linear and
// nn.Conv2d: gain = sqrt(2/(1+a^2)) = sqrt(1/3), std = gain/sqrt(fan_in), and the uniform bound
// sqrt(3)*std = 1/sqrt(fan_in); the variance of both weights and biases is 1/(3*fan_in). The
// fan-in is what each output unit sums over, in_features for a linear layer and
// in_channels/groups*kh*kw for a convolution, read from the consuming operator by
// graph.Model.FanIn (so a Gemm with transB=0 or a MatMul, whose weights are [in, out], is right
// too).
//
// The values come from one math/rand/v2 PCG stream seeded with (seed, a fixed stream constant),
// consumed by the initializers in file order, row-major within each: a seed gives the same
// values on every platform, which match the distribution of torch.manual_seed(seed)'s draw but
// not its values.
package models
