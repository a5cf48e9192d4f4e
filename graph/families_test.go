package graph

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/ltransfer/ltransfer/align"
	"github.com/ltransfer/ltransfer/params"
)

// TestSymmetriesOfStructures checks the walk on testdata/symmetry/structures.onnx (see
// testdata/gen/make_symmetry_structures.py), which has the structures of the torchvision
// families. The 17 groups, counted by hand:
//   - stem conv (8): read by the three Inception branches;                         1
//   - Inception: b1 (4), b2's 1x1 reduce (6) and 3x3 (4), b3 (4); the concat gives
//     each its slice of the dense layer's BatchNorm and of the next convolutions;  4
//   - dense layer: its conv's 6 new channels, concatenated after the 12;           1
//   - grouped conv (groups=4, 16 channels): the reduce conv's outputs are 4 copies
//     of one within-group group of 4, and each convolution group's 4 outputs is a
//     group (also the SE scale's and the expand conv's input slices);              1+4
//   - squeeze-and-excitation hidden units (4);                                      1
//   - expand conv (16), carried by the depthwise conv with multiplier 2 in blocks
//     of 2 into p and q;                                                            1
//   - p and q are concatenated and channel-shuffled: unpermuted (the shuffle's
//     Reshape splits the channel axis), and so is mix's input;                      0
//   - mix (10), the fire module's squeeze (6), expand 1x1 (5) and 3x3 (5);          4
//   - fc's outputs are the network output.                                          0
func TestSymmetriesOfStructures(t *testing.T) {
	m, err := Load(testdataPath("symmetry", "structures.onnx"))
	must(t, err)
	spec, unpermuted, err := Symmetries(m)
	must(t, err)
	if len(spec.Groups) != 17 {
		for _, g := range spec.Groups {
			t.Logf("group %s (%d): %v", g.Name, g.Size, g.Members)
		}
		t.Fatalf("%d groups, want 17", len(spec.Groups))
	}
	want := map[string]align.Member{
		// b3's slice of the transition BatchNorm after the dense concat.
		"/b3/b3.1/b3.1.0/Conv": {Param: "trans_bn.weight", Axis: 0, Block: 1, Offset: 8, Repeat: 1},
		// The within-group permutation of the grouped conv, on all 4 copies of its input.
		"/grouped/grouped.0/Conv/within-group": {Param: "onnx::Conv_211", Axis: 0, Block: 1, Repeat: 4},
		// Convolution group 2's outputs, in the SE expand conv's outputs.
		"/grouped/grouped.0/Conv/group2": {Param: "se2.bias", Axis: 0, Block: 1, Offset: 8, Repeat: 1},
		// The depthwise conv's outputs move in blocks of 2.
		"/expand/expand.0/Conv": {Param: "dw.weight", Axis: 0, Block: 2, Repeat: 1},
	}
	for _, g := range spec.Groups {
		if mb, ok := want[g.Name]; ok {
			found := false
			for _, x := range g.Members {
				found = found || x == mb
			}
			if !found {
				t.Errorf("group %s: no member %+v in %+v", g.Name, mb, g.Members)
			}
			delete(want, g.Name)
		}
	}
	if len(want) > 0 {
		t.Errorf("groups not found: %v", want)
	}
	shuffled := false
	for _, u := range unpermuted {
		shuffled = shuffled || u.Param == "p.weight" && u.Axis == 0
	}
	if !shuffled {
		t.Error("the channel-shuffled p.weight rows are not reported unpermuted")
	}
	kept, dropped, err := VerifySymmetries(m, spec, 3)
	must(t, err)
	if len(dropped) != 0 || len(kept.Groups) != 17 {
		t.Errorf("verification dropped %v", dropped)
	}
	checkPermutedLogits(t, m, spec, 2)
	checkORTPermuted(t, ortNode(t), m, testdataPath("symmetry", "structures.onnx"), spec)
}

// checkPermutedLogits permutes m by a random permutation of every group of spec at once and
// checks that the evaluation logits on a random batch do not change.
func checkPermutedLogits(t *testing.T, m *Model, spec align.Spec, batch int) {
	t.Helper()
	rng := rand.New(rand.NewPCG(5, uint64(len(spec.Groups))))
	s, err := NewSession(m, batch)
	must(t, err)
	x := make([]float32, batch*s.ExampleSize())
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	before, err := s.Logits(x)
	must(t, err)
	checkDependsOnInput(t, before, batch)
	permuted, err := align.Random(spec, rng).Apply(spec, m.Params)
	must(t, err)
	must(t, s.SetParams(permuted))
	after, err := s.Logits(x)
	must(t, err)
	if d, scale := maxAbsDiff(before, after), maxAbs(before); d > 1e-4*(1+scale) {
		t.Errorf("permuting every group changed the logits by %g (scale %g)", d, scale)
	}
}

// familyGroups are the groups of the torchvision families, counted by hand from the
// architectures. "Stream" is a residual stream: a stage's blocks add into it, so their outputs and
// the stage's projection shortcut are one group. Grouped convolutions give one within-group group
// (on the input) plus one group per convolution group (on the output); depthwise convolutions
// carry their input's group; squeeze-and-excitation hidden units are a group; a channel shuffle
// leaves the shuffled channels unpermuted.
var familyGroups = []struct {
	name  string
	count int
	why   string
}{
	{"resnet18", 12, "4 streams (the stem joins stage 1's stream, which has no projection) + 8 blocks x 1 inner"},
	{"resnet50", 37, "stem 1 (stage 1 has a projection) + 4 streams + 16 bottlenecks x 2 inner"},
	{"resnext50_32x4d", 533, "stem 1 + 4 streams + 16 bottlenecks x (1 within-group + 32 convolution groups)"},
	{"regnet_x_400mf", 407, "stem 1 + 4 streams + blocks [1 2 7 12] x (1 within-group + G), G = width/16 = [2 4 10 25]: 3+10+77+312"},
	{"regnet_y_400mf", 568, "stem 1 + 4 streams + blocks [1 3 6 6] x (1 within-group + G + 1 SE), G = width/8 = [6 13 26 55]: 8+45+168+342"},
	{"vgg11_bn", 10, "8 convolutions + 2 hidden classifier layers"},
	{"alexnet", 7, "5 convolutions + 2 hidden classifier layers"},
	{"efficientnet_b0", 40, "stem (carried by block 1's depthwise) 1 + 15 expansions + 16 SE + 7 stage streams + head conv 1"},
	{"mnasnet0_5", 25, "stem conv (carried by its depthwise) 1 + stem projection 1 + 16 expansions + 6 stack streams + head conv 1"},
	{"mobilenet_v2", 25, "stem (carried by block 1's depthwise) 1 + 16 expansions + 7 stage streams + last conv 1"},
	{"mobilenet_v3_small", 27, "stem (carried by block 1's depthwise) 1 + 10 expansions + 9 SE + 5 streams + last conv 1 + hidden classifier 1"},
	{"squeezenet1_0", 25, "conv1 1 + 8 fire modules x (squeeze + expand 1x1 + expand 3x3); the final conv is the output"},
	{"googlenet", 57, "conv1, conv2, conv3 + 9 Inception modules x (1x1, 3x3 reduce, 3x3, second reduce, its 3x3, pool projection)"},
	{"densenet121", 120, "stem 1 + 58 dense layers x (bottleneck 1x1 + 32 growth channels) + 3 transitions"},
	{"shufflenet_v2_x0_5", 18, "stem 1 (read by stage 2's first block before any shuffle) + 16 blocks x 1 branch-2 inner + conv5 1"},
}

// TestSymmetriesOfTorchvisionFamilies builds the torchvision families with
// testdata/gen/torchvision_models.py (default eval-mode exports, BatchNorm statistics and biases
// drawn at random with --distinct so that the exporter deduplicates nothing; cached under the
// user cache folder) and checks each one's group count against familyGroups, then permutes it by
// a random permutation of every group at once and checks that the logits do not change: in ONNX
// Runtime for every family, and in the engine where it runs the family's operators (at 64x64:
// VGG and AlexNet, at 224x224, are left to ONNX Runtime to keep the test within CI's time). Where CI is
// set, a missing PyTorch or ONNX Runtime fails the test.
func TestSymmetriesOfTorchvisionFamilies(t *testing.T) {
	if testing.Short() {
		t.Skip("builds torchvision models")
	}
	dir := torchvisionCache(t)
	node := ortNode(t)
	var missing []string
	for _, f := range familyGroups {
		if _, err := os.Stat(filepath.Join(dir, f.name+"-distinct.onnx")); err != nil {
			missing = append(missing, f.name)
		}
	}
	if len(missing) > 0 {
		cmd := exec.Command("/usr/bin/python3", filepath.Join("..", "testdata", "gen", "torchvision_models.py"),
			"--out", dir, "--distinct", "--families", strings.Join(missing, ","))
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("torchvision_models.py: %v: ...%s", err, out[max(0, len(out)-300):])
		}
	}
	for _, f := range familyGroups {
		t.Run(f.name, func(t *testing.T) {
			path := filepath.Join(dir, f.name+"-distinct.onnx")
			m, err := Load(path)
			must(t, err)
			spec, _, err := Symmetries(m)
			must(t, err)
			if len(spec.Groups) != f.count {
				t.Errorf("%d groups, want %d: %s", len(spec.Groups), f.count, f.why)
			}
			checkORTPermuted(t, node, m, path, spec)
			if m.Input.Shape[2] > 64 {
				t.Logf("the engine check runs on the 64x64 families only (CI time); ONNX Runtime covers %v", m.Input.Shape[1:])
				return
			}
			s, err := NewSession(m, 1)
			if err == nil {
				_, err = s.Logits(make([]float32, s.ExampleSize()))
			}
			if errors.Is(err, ErrUnsupported) {
				t.Logf("the engine check waits for operators: %v", err)
				return
			}
			must(t, err)
			checkPermutedLogits(t, m, spec, 2)
		})
	}
}

// checkORTPermuted permutes the model file path (the graph of m) by a random permutation of every
// group of spec at once, saves it, and checks that ONNX Runtime gives both files the same logits
// on a random batch.
func checkORTPermuted(t *testing.T, node string, m *Model, path string, spec align.Spec) {
	t.Helper()
	perm := align.Random(spec, rand.New(rand.NewPCG(9, uint64(len(spec.Groups)))))
	permuted, err := perm.Apply(spec, m.Params)
	must(t, err)
	out := filepath.Join(t.TempDir(), "permuted.onnx")
	must(t, m.Save(out, permuted))
	x := make([]float32, 2*params.Size(m.Input.Shape[1:]))
	rng := rand.New(rand.NewPCG(4, 2))
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	before, after := ortLogits(t, node, m, path, x), ortLogits(t, node, m, out, x)
	checkDependsOnInput(t, before, 2)
	if d, scale := maxAbsDiff(before, after), maxAbs(before); d > 1e-4*(1+scale) {
		t.Errorf("ONNX Runtime: permuting every group changed the logits by %g (scale %g)", d, scale)
	}
}

// checkDependsOnInput fails the test when the logits of a batch of different random inputs are
// all equal: a network whose output ignores its input would pass any permutation check.
func checkDependsOnInput(t *testing.T, logits []float32, batch int) {
	t.Helper()
	k := len(logits) / batch
	if d := maxAbsDiff(logits[:k], logits[k:2*k]); d <= 1e-4*(1+maxAbs(logits)) {
		t.Fatalf("the logits of two random inputs differ by %g: the output does not depend on the input", d)
	}
}

// maxAbs returns the largest magnitude in x.
func maxAbs(x []float32) float64 {
	m := 0.0
	for _, v := range x {
		m = max(m, math.Abs(float64(v)))
	}
	return m
}

// ortLogits runs testdata/ort/predict.js on the model file path (the graph of m) for the batch x
// and returns ONNX Runtime's logits.
func ortLogits(t *testing.T, node string, m *Model, path string, x []float32) []float32 {
	t.Helper()
	dir := t.TempDir()
	data, logits := filepath.Join(dir, "x.f32"), filepath.Join(dir, "logits.f32")
	buf := make([]byte, 0, 4*len(x))
	for _, v := range x {
		buf = binary.LittleEndian.AppendUint32(buf, math.Float32bits(v))
	}
	must(t, os.WriteFile(data, buf, 0o644))
	shape := strconv.Itoa(len(x) / params.Size(m.Input.Shape[1:]))
	for _, d := range m.Input.Shape[1:] {
		shape += "," + strconv.Itoa(d)
	}
	cmd := exec.Command(node, testdataPath("ort", "predict.js"), "--model", path, "--data", data, "--shape", shape,
		"--input", m.Input.Name, "--output", m.Output.Name, "--logits", logits)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("predict.js on %s: %v: %s", path, err, out)
	}
	b, err := os.ReadFile(logits)
	must(t, err)
	out := make([]float32, len(b)/4)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return out
}

// ortNode returns the node executable after checking that onnxruntime-node is installed under
// testdata/ort: where CI is set a missing install fails the test, elsewhere it skips.
func ortNode(t *testing.T) string {
	t.Helper()
	node, err := exec.LookPath("node")
	if err == nil {
		_, err = os.Stat(testdataPath("ort", "node_modules", "onnxruntime-node", "package.json"))
	}
	if err != nil {
		msg := fmt.Sprintf("ONNX Runtime is not installed (%v): install Node.js and run npm ci --ignore-scripts --prefix testdata/ort", err)
		if os.Getenv("CI") != "" {
			t.Fatal(msg + " (CI is set, so this check must run)")
		}
		t.Skip(msg)
	}
	return node
}
