// Package convert transfers learning trajectories (Chijiwa, ICLR 2024): given the checkpoints
// theta1_0 .. theta1_T of a source run and a new initialization theta2_0 of the same
// architecture, it builds
//
//	theta2_k = theta2_0 + pi_k(theta1_k - theta1_0)
//
// at every interpolation point k of the source trajectory (K points between consecutive
// checkpoints, spaced by a Schedule), with the permutation pi_k of the network's hidden units
// chosen by a method: GMT and FGMT match gradients at the transferred and the source points,
// naive keeps the identity, oracle matches the target run's own update. Every point has its
// BatchNorm statistics recomputed and is evaluated on validation data.
//
// Transfer is the algorithm; a Job is one transfer with its files (the ONNX models of its
// steps, perm.json and report.json, whose layout Report describes). Trajectories load and
// validate the checkpoints; Evaluate and Runner score and run any model on a dataset.Source.
//
// Around the transfer, each in a package of its own: convert/batch (manifests of many jobs,
// resumable and shardable), convert/train (SGD training and fine-tuning), convert/experiment
// (the paper's comparisons with their plots) and convert/dataset (data sources).
package convert
