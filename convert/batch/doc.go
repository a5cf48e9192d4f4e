// Package batch runs many jobs as one: a manifest lists transfers (convert.Job), evaluations
// and initializations; Run runs them in the order their inputs need, several at once, resumes
// an interrupted batch by skipping the jobs whose outputs are complete, and splits a manifest
// into shards for processes started by a scheduler.
//
// # Manifests
//
// A manifest is a JSON or YAML file (.json, .yaml or .yml) with the jobs and the defaults they
// share:
//
//	defaults:                     # any job field; a job's own fields override them
//	  data: mnist:data/mnist
//	  mean: 0.1307
//	  std: 0.3081
//	  method: fgmt
//	jobs:
//	  - trajectory: runs/seed1    # a folder of checkpoints, or the files in order
//	    init: inits/seed2.onnx
//	    out: out/seed2
//	  - kind: eval
//	    models: [out/seed2/best.onnx, out/seed2/final.onnx]
//	    out: evals/seed2.json
//	  - kind: init
//	    model: mlp:784,256,10
//	    init_seed: 3
//	    out: inits/seed3.onnx
//
// The fields of every job:
//
//	id            its name in reports and errors (default: out as written); unique
//	kind          transfer (default), eval or init
//	out           a transfer's output folder, an eval's JSON file, an init's ONNX file; unique
//	              (required)
//
// The fields of transfer and eval jobs:
//
//	data          training data: mnist:DIR, cifar10:DIR or npz:FILE (required)
//	val_data      validation data, its test split (default: the end of data's training set)
//	val_fraction  the fraction of data's training set held out for validation (0.1)
//	mean, std     per-channel normalisation after scaling bytes to [0,1]: a number or a list
//	limit         use only the first N training examples (0: all)
//	val_limit     use only the first N validation examples (0: all)
//	classes       keep only these labels (a list); relabel: map them to 0..k-1 (false)
//	batch         mini-batch size (transfer 128, eval 256)
//
// The fields of a transfer:
//
//	trajectory    the source run: a folder of ONNX checkpoints, or the files in order (required)
//	init          the new initialization, an ONNX file
//	init_seed     or the seed it is drawn from: the first checkpoint with every parameter drawn
//	              anew (as ltransfer init --from does), written to the output folder as init.onnx
//	target        the target run's trajectory, a folder or files, for method oracle
//	method        gmt (default), fgmt, naive or oracle
//	steps         interpolation points between consecutive checkpoints (10)
//	schedule      cosine (default) or uniform
//	grad_batches  mini-batches each gradient is averaged over (1)
//	bn_batches    batches BatchNorm statistics are recomputed over (20)
//	seed          seed of the mini-batches and the matching order (1)
//	max_sweeps    coordinate-descent sweeps of each matching (0: the matcher's default)
//	save          the ONNX files written: steps, best, final, as a list or "best,final" (all)
//	allow_nonfinite  accept checkpoints with NaN or infinite parameters (false)
//
// The fields of an eval, which writes the accuracy and loss of every model, with its SHA-256:
//
//	models        the ONNX files to evaluate: a file or a list (required)
//	split         train, val (default) or test
//
// The fields of an init, which writes a freshly initialized model as ltransfer init does:
//
//	model         a built-in architecture spec, such as mlp:784,256,10
//	from          or an ONNX model whose parameters are drawn anew
//	init_seed     the seed of the initialization (required)
//
// Relative paths, data paths included, are relative to the manifest's folder. An unknown field
// is an error, and so is a field that a job sets but its kind does not use; a default that a
// kind does not use is ignored, and so is a default init (or init_seed, model, from) when the
// job gives its alternative. Two jobs may not share an id. YAML anchors, aliases and merge
// keys (<<) work; a key given twice is an error.
//
// No job may write over another's files: an output may not equal or lie inside another
// output, nor lie inside (or equal, unless it is a dependency) a path that a job reads (inside
// a data folder is allowed), nor hold the manifest. Outputs must stay inside the manifest's
// folder unless ManifestOptions.AllowOutside. A manifest may have at most 32 MiB and 100,000
// jobs, and its aliases may add at most the larger of 2^20 and 16 times the values it writes
// out.
//
// # Running a batch
//
// Run runs the jobs one after another or several at once; a job that fails is reported
// and the others go on. A job that reads another job's output (an eval of a transfer's
// final.onnx) starts after that job has finished, and fails without running if that job
// failed.
//
// Processes started by a scheduler (a Kubernetes Indexed Job, a Slurm job array; see
// ShardFromEnv) split a manifest without a coordinator: each job belongs to shard h mod count,
// where h is the first 8 bytes of the SHA-256 of the job's identity (its kind, output, method and
// input paths as written in the manifest, not its position), so reordering the manifest or
// adding jobs moves no other job. Jobs of different shards are not coordinated: a job that reads the output
// of a job of another shard fails if that output is not there yet.
//
// A job whose outputs are complete is skipped. For a transfer that means its report.json records
// the same method, settings and SHA-256 of every input file, every file the report lists is
// present, and batch-job.json (written last) records the same manifest fields, such as the
// preprocessing, which report.json does not hold; for an eval, its JSON file records the same
// settings and the same SHA-256 of every model. Every file is written under a temporary name (.NAME.tmp-*) and renamed, so
// a batch killed at any moment leaves only complete files besides temporary ones, which the next
// run removes before it redoes the unfinished jobs.
//
// Several processes may run on one folder at once (a retried Kubernetes pod while its
// predecessor runs): each job's output, and the report, is locked by the process writing it
// (see lock.go), a process waits for a job another one holds and then skips or redoes it
// by its outputs, and only the holder of an output's lock removes its temporary files.
package batch
