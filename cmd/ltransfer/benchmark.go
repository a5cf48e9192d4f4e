package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ltransfer/ltransfer/convert"
	"github.com/ltransfer/ltransfer/graph"
)

// benchCase is one transfer that the benchmark times: a source trajectory and a new
// initialization of the same architecture.
type benchCase struct {
	// model names the case in the table (mlp4096, cnn, resnet).
	model string
	// source is the source run's checkpoints in order; init the new initialization.
	source *convert.Trajectory
	init   *graph.Model
}

// benchResult is what the benchmark measured for one case and method.
type benchResult struct {
	Model  string `json:"model"`
	Method string `json:"method"`
	BLAS   string `json:"blas"`
	// Seconds is the wall time of Transfer, from the symmetry check to the last evaluation;
	// the other times split it (EvalSeconds includes the BatchNorm statistics; OtherSeconds is
	// the rest: symmetries, the initialization's evaluation, interpolation, matching objectives).
	Seconds       float64 `json:"seconds"`
	GradSeconds   float64 `json:"grad_seconds"`
	ScoreSeconds  float64 `json:"score_seconds"`
	AssignSeconds float64 `json:"assign_seconds"`
	EvalSeconds   float64 `json:"eval_seconds"`
	OtherSeconds  float64 `json:"other_seconds"`
	// Steps is the number of transfer steps (K per segment); Accuracies the validation accuracy
	// of steps 0..Steps.
	Steps        int       `json:"steps"`
	BestAccuracy float64   `json:"best_accuracy"`
	BestStep     int       `json:"best_step"`
	Accuracies   []float64 `json:"accuracies"`
	// PeakRSSBytes is the process's peak resident memory during the transfer (VmHWM, reset
	// just before it starts); BaseRSSBytes its resident memory before the checkpoints were
	// loaded (the runtime and the data set). TransferBytes = PeakRSSBytes - BaseRSSBytes is
	// the memory of the transfer, to compare with BufferBytes.
	PeakRSSBytes  int64 `json:"peak_rss_bytes"`
	BaseRSSBytes  int64 `json:"base_rss_bytes"`
	TransferBytes int64 `json:"transfer_bytes"`
	// BufferBytes is the sum of the buffers the algorithm must hold at once (see bufferBytes):
	// the T checkpoints, the initialization, the model's parameters in the session (the point
	// whose gradient or accuracy is computed: the source and the transferred points are
	// written there in turn), the scratch copy of the largest parameter, the gradient pairs
	// the method keeps at its last step (GMT: the targets of every point and the cached
	// sources; FGMT: every pair) and the float64 score matrix of the largest group.
	BufferBytes int64 `json:"buffer_bytes"`
}

// benchTransfer runs one transfer of c with opt (opt.Progress and the method included) and returns its
// timings, accuracy and memory. baseRSS is the resident memory measured before the
// checkpoints were loaded (see readRSS); the peak is read from the kernel's high-water mark,
// reset just before the transfer starts when the kernel allows it.
func benchTransfer(ctx context.Context, c benchCase, opt convert.Options, baseRSS int64) (*benchResult, error) {
	buffers, err := bufferBytes(c, opt)
	if err != nil {
		return nil, err
	}
	resetPeakRSS()
	start := time.Now()
	res, err := convert.Transfer(ctx, c.source, c.init, opt, nil)
	if err != nil {
		return nil, err
	}
	wall := time.Since(start).Seconds()
	peak, _, err := readRSS()
	if err != nil {
		return nil, err
	}
	r := &benchResult{Model: c.model, Method: opt.Method, BLAS: graph.BLAS, Seconds: wall, Steps: len(res.Steps) - 1,
		BestAccuracy: res.Steps[res.Best].Accuracy, BestStep: res.Best, PeakRSSBytes: peak, BaseRSSBytes: baseRSS,
		TransferBytes: peak - baseRSS, BufferBytes: buffers}
	for _, s := range res.Steps {
		// GradSeconds covers the gradients of the step; MatchSeconds the score products, the
		// assignments and the matching objective.
		r.GradSeconds += s.GradSeconds
		r.ScoreSeconds += s.ScoreSeconds
		r.AssignSeconds += s.AssignSeconds
		r.EvalSeconds += s.EvalSeconds
		r.OtherSeconds += s.MatchSeconds - s.ScoreSeconds - s.AssignSeconds
		r.Accuracies = append(r.Accuracies, s.Accuracy)
	}
	r.OtherSeconds += wall - r.GradSeconds - r.EvalSeconds - (r.ScoreSeconds + r.AssignSeconds + r.OtherSeconds)
	return r, nil
}

// bufferBytes returns the bytes of the buffers a transfer of c must hold at once (see
// benchResult.BufferBytes), with T the number of checkpoints, P the bytes of one set of
// parameters (every float32 initializer), L the bytes of the largest parameter, G the bytes of
// one gradient, N the gradient pairs kept at the last step (K·(T-1) for GMT and FGMT, none for
// the other methods) and g the size of the largest group:
//
//	(T+2)·P + L + 2·N·G + 8·g²
//
// (T+2)·P are the checkpoints, the initialization and the session's parameters, which hold
// the source and the transferred points in turn; L is the scratch into which the transfer
// writes theta1_j - theta1_0 one parameter at a time (convert.Transfer holds no
// parameter-sized buffer of differences). G is measured on one batch, in the form the
// transfer keeps a gradient (dense layers' weights as factors where that is smaller);
// averaging over GradBatches batches stacks their factors. Activations and the data set are
// not counted.
func bufferBytes(c benchCase, opt convert.Options) (int64, error) {
	point := c.init.Params.Bytes()
	var scratch int64
	for _, p := range c.init.Params {
		scratch = max(scratch, 4*int64(len(p.Data)))
	}
	n := min(opt.Batch, opt.Train.Len())
	s, err := graph.NewSession(c.init, n)
	if err != nil {
		return 0, err
	}
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	x, y := make([]float32, n*s.ExampleSize()), make([]int64, n)
	if err := opt.Train.Batch(idx, x, y); err != nil {
		return 0, err
	}
	_, g, err := s.LossAndFactoredGrad(x, y)
	if err != nil {
		return 0, err
	}
	grad := g.Params.Bytes()
	for _, l := range g.LowRank {
		grad += 4 * int64(opt.GradBatches*(len(l.U)+len(l.V)))
	}
	spec, _, err := graph.Symmetries(c.init)
	if err != nil {
		return 0, err
	}
	var largest int64
	for _, gr := range spec.Groups {
		largest = max(largest, int64(gr.Size))
	}
	pairs := int64(0)
	if opt.Method == "gmt" || opt.Method == "fgmt" {
		pairs = int64(opt.Steps * (len(c.source.Checkpoints) - 1))
	}
	return int64(len(c.source.Checkpoints)+2)*point + scratch + 2*pairs*grad + 8*largest*largest, nil
}

// readRSS returns the process's peak and current resident memory in bytes (VmHWM and VmRSS of
// /proc/self/status; Linux only).
func readRSS() (peak, current int64, err error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, 0, fmt.Errorf("bench: reading memory use: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		key, value, ok := strings.Cut(sc.Text(), ":")
		if !ok || (key != "VmHWM" && key != "VmRSS") {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(value), " kB"), 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("bench: reading memory use: %s: %w", sc.Text(), err)
		}
		if key == "VmHWM" {
			peak = kb << 10
		} else {
			current = kb << 10
		}
	}
	if peak == 0 || current == 0 {
		return 0, 0, errors.Join(sc.Err(), errors.New("bench: reading memory use: no VmHWM and VmRSS in /proc/self/status"))
	}
	return peak, current, nil
}

// resetPeakRSS resets the kernel's peak resident memory of the process to the current value
// (Linux: writing 5 to /proc/self/clear_refs), so that VmHWM afterwards is the peak of what
// follows. Where that is not possible the peak stays the process's.
func resetPeakRSS() {
	_ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
}

// benchPasses are the passes benchPass times: a training pass (forward, mean cross-entropy and the
// gradient of every trainable parameter, BatchNorm with batch statistics), an evaluation pass
// (forward with BatchNorm's running statistics) and a BatchNorm-statistics pass (the running
// statistics of the current parameters from one batch).
var benchPasses = []string{"train", "eval", "stats"}

// passResult is what benchPass measured for one pass of a model.
type passResult struct {
	Pass  string `json:"pass"`
	BLAS  string `json:"blas"`
	Batch int    `json:"batch"`
	// MinSeconds and MedianSeconds are over the timed runs, after one warm-up run that also
	// builds the session's program.
	MinSeconds    float64 `json:"min_seconds"`
	MedianSeconds float64 `json:"median_seconds"`
	// CPUSeconds is the median CPU time of a run, over every thread of the process (on a shared
	// machine, steadier than the wall time).
	CPUSeconds float64 `json:"cpu_seconds"`
	// PeakRSSBytes is the process's peak resident memory (VmHWM), including the loaded model.
	PeakRSSBytes int64 `json:"peak_rss_bytes"`
}

// benchPass times one of benchPasses of m on a batch of seeded random normal inputs (and uniform
// labels over the model's classes), runs times after a warm-up.
func benchPass(m *graph.Model, pass string, batch, runs int) (*passResult, error) {
	if !slices.Contains(benchPasses, pass) {
		return nil, fmt.Errorf("bench: unknown pass %q (want one of %s)", pass, strings.Join(benchPasses, ", "))
	}
	if runs < 1 {
		return nil, fmt.Errorf("bench: %d runs", runs)
	}
	s, err := graph.NewSession(m, batch)
	if err != nil {
		return nil, err
	}
	classes := 1
	if len(m.Output.Shape) == 2 && m.Output.Shape[1] > 0 {
		classes = m.Output.Shape[1]
	}
	rng := rand.New(rand.NewPCG(1, 2))
	x := make([]float32, batch*s.ExampleSize())
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	labels := make([]int64, batch)
	for i := range labels {
		labels[i] = int64(rng.IntN(classes))
	}
	run := func() error {
		switch pass {
		case "train":
			_, _, err := s.LossAndGrad(x, labels)
			return err
		case "eval":
			_, err := s.Logits(x)
			return err
		}
		done := false
		_, err := s.NormStats(func() ([]float32, bool) {
			if done {
				return nil, false
			}
			done = true
			return x, true
		})
		return err
	}
	var times, cpu []float64
	for i := 0; i <= runs; i++ {
		start, c0 := time.Now(), cpuSeconds()
		if err := run(); err != nil {
			return nil, err
		}
		if i > 0 {
			times = append(times, time.Since(start).Seconds())
			cpu = append(cpu, cpuSeconds()-c0)
		}
	}
	peak, _, err := readRSS()
	if err != nil {
		return nil, err
	}
	slices.Sort(times)
	slices.Sort(cpu)
	return &passResult{Pass: pass, BLAS: graph.BLAS, Batch: batch, MinSeconds: times[0], MedianSeconds: times[len(times)/2],
		CPUSeconds: cpu[len(cpu)/2], PeakRSSBytes: peak}, nil
}

// cpuSeconds returns the CPU time the process has used, user and system, over all threads.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}
