// Package dataset reads the labelled data that trajectory transfer trains and
// validates on: MNIST IDX files, CIFAR-10 binary batches and NumPy .npz
// archives.
//
// # Sources
//
// Every data set is a Source, a small interface: Len examples of one Shape
// (for instance [1 28 28], [3 32 32] or [D]), and Batch, which copies the
// examples at a list of positions, preprocessed, into a caller-owned float32
// buffer and their labels into an int64 buffer. Open builds a Source from a
// spec string:
//
//	mnist:DIR    train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-… (each optionally .gz)
//	cifar10:DIR  data_batch_1.bin … data_batch_5.bin, test_batch.bin
//	npz:FILE     arrays x (N×C×H×W or N×D) and y (N labels)
//
// Each file is read once and kept in its compact form (bytes for byte images,
// float32 otherwise); a declared count or dimension larger than the file's
// content is an error, never an allocation.
//
// # Preprocessing
//
// Batch converts on the fly, in this order:
//
//  1. Byte images (MNIST, CIFAR-10 and uint8 npz arrays) are scaled to [0,1]
//     by dividing by 255; float npz arrays are taken as they are.
//  2. With Options.Mean and Options.Std, each value v of channel c becomes
//     (v - Mean[c]) / Std[c]. The channel axis is the first axis of the
//     example shape: C for [C H W] images, and each feature for flat [D]
//     examples. One value applies to every channel.
//
// # Selection
//
// Options choose the split (the training set minus a validation part taken
// from its end, that validation part, or the test set), then a class subset
// with optional relabelling, then a limit on the number of examples. The
// result is a view: a list of positions into the loaded data, which Subset
// also builds for any Source.
//
// # Epochs
//
// Shuffle gives the deterministic example order of one epoch from a seed, and
// Batches cuts an order into mini-batches.
package dataset
