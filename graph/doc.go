// Package graph is ltransfer's ONNX front and back end.
//
// Load parses an ONNX file once, with ltransfer's own protobuf bindings (internal/onnxpb,
// generated from onnx.proto), which validate tensor sizes, read external data and keep the
// original message so that Save writes the model back changing nothing but the parameters. The
// operator graph is built from that message into this package's onnx-go backend
// (github.com/owulveryck/onnx-go's Backend interface), which records the operators, their
// attributes and the initializer tensors as onnx-go's decoder would; the float32 parameters are
// read in place from the message's bytes, so a loaded model holds them once.
//
// A Session turns a model into Gorgonia expression graphs (gorgonia.org/gorgonia) for one batch
// size. The shape subgraphs that torch.onnx.export writes (Shape, Gather, Unsqueeze, Concat,
// Constant feeding Reshape) are evaluated while the graph is built, since every shape is known
// once the batch size is. Gorgonia's own operators carry the matrix products and activations;
// operators Gorgonia lacks or cannot differentiate (broadcasting arithmetic, BatchNormalization,
// LayerNormalization, pooling with ceil_mode, Clip and the hard activations, Erf, ReduceMean,
// MatMul of batches, softmax and the fused softmax cross-entropy loss) are kernels plugged into
// Gorgonia's symbolic differentiation, with PyTorch's gradients at kinks; operators that only
// move values (Slice, Split, Pad, Transpose of any rank) are one kernel reading its input
// through an index map, and the gradient scatters back through the same map. Convolutions are
// kernels too, for any groups, strides, dilations and padding: im2col and BLAS products,
// forward and backward, with no transposes. opBuilders maps every supported operator to its
// translation (SupportedOps lists its keys); an operator missing from it is refused with the
// node, the operator and the model's opset. The graph runs on this package's machine (vm.go),
// in the order of Gorgonia's tape machine but with every kernel output in a planned buffer,
// reused across runs and, within a run, as soon as its value has been read for the last time.
// One run gives the logits, the mean cross-entropy
//
//	L = -1/N sum_i log softmax(z_i)[y_i]
//
// and dL/dθ for every trainable initializer θ, or (Session.LossAndFactoredGrad) the same with the
// weight gradient of every dense layer kept as the two factors dy and a of dL/dW = dy^T a, a sum
// of one outer product per example, which is far smaller than the matrix for a batch below its
// dimensions. A fully connected layer as PyTorch exports it (Gemm with transB=1, or MatMul of a
// Transpose of the weight) is one kernel multiplying by the transposed weight in place.
// BatchNormalization uses batch statistics in training passes and running statistics in
// evaluation passes, as PyTorch does.
//
// Errors name the file, and the node or parameter, as in
// `graph: model.onnx: node "Conv_3" (Conv): ...`.
package graph
