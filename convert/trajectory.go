package convert

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"unicode"

	"github.com/ltransfer/ltransfer/graph"
)

// Trajectory is a recorded training run: checkpoints of one architecture, in training order.
type Trajectory struct {
	Paths       []string
	Checkpoints []*graph.Model
}

// TrajectoryFiles lists the ONNX files of a folder in natural order of their names
// (ckpt_2.onnx before ckpt_10.onnx).
func TrajectoryFiles(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("convert: trajectory: %w", err)
	}
	var names []string
	for _, e := range entries {
		if !e.IsDir() && strings.EqualFold(filepath.Ext(e.Name()), ".onnx") {
			names = append(names, e.Name())
		}
	}
	slices.SortFunc(names, naturalCompare)
	paths := make([]string, len(names))
	for i, n := range names {
		paths[i] = filepath.Join(dir, n)
	}
	return paths, nil
}

// naturalCompare orders strings with embedded numbers by their numeric value.
func naturalCompare(a, b string) int {
	for a != "" && b != "" {
		ra, rb := rune(a[0]), rune(b[0])
		if unicode.IsDigit(ra) && unicode.IsDigit(rb) {
			na, restA := leadingDigits(a)
			nb, restB := leadingDigits(b)
			ta, tb := strings.TrimLeft(na, "0"), strings.TrimLeft(nb, "0")
			if len(ta) != len(tb) {
				return len(ta) - len(tb)
			}
			if c := strings.Compare(ta, tb); c != 0 {
				return c
			}
			a, b = restA, restB
			continue
		}
		if ra != rb {
			return int(ra) - int(rb)
		}
		a, b = a[1:], b[1:]
	}
	return len(a) - len(b)
}

func leadingDigits(s string) (string, string) {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	return s[:i], s[i:]
}

// LoadTrajectory loads checkpoints given as files, or as one folder of ONNX files. At least two
// are needed (a start and an end), and all must share the first one's architecture. Checkpoints
// are matched by graph structure, and every checkpoint's parameters take the first one's names
// (graph.Model.AdoptNames): an exporter that deduplicated equal initializers in one checkpoint
// (torch.onnx.export does at initialization) names them differently from the next.
func LoadTrajectory(paths ...string) (*Trajectory, error) {
	if len(paths) == 1 {
		if st, err := os.Stat(paths[0]); err == nil && st.IsDir() {
			files, err := TrajectoryFiles(paths[0])
			if err != nil {
				return nil, err
			}
			if len(files) == 0 {
				return nil, fmt.Errorf("convert: trajectory %s holds no .onnx files", paths[0])
			}
			paths = files
		}
	}
	if len(paths) < 2 {
		return nil, fmt.Errorf("convert: a trajectory needs at least 2 checkpoints (a start and an end), got %d: %v", len(paths), paths)
	}
	t := &Trajectory{Paths: paths}
	for _, p := range paths {
		m, err := graph.Load(p)
		if err != nil {
			return nil, err
		}
		if len(t.Checkpoints) > 0 {
			if err := m.AdoptNames(t.Checkpoints[0]); err != nil {
				return nil, fmt.Errorf("convert: trajectory checkpoints differ: %w", err)
			}
		}
		t.Checkpoints = append(t.Checkpoints, m)
	}
	return t, nil
}

// ErrArchitecture is wrapped when an initialization does not fit a trajectory.
var ErrArchitecture = errors.New("architecture mismatch")

// CheckInit verifies that an initialization has the trajectory's architecture, and gives its
// parameters the trajectory's names where they differ (graph.Model.AdoptNames), so that the
// files written from it name every parameter as the trajectory does.
func (t *Trajectory) CheckInit(init *graph.Model) error {
	if err := init.AdoptNames(t.Checkpoints[0]); err != nil {
		return fmt.Errorf("convert: the initialization %s does not fit the trajectory: %w: %w", init.Path, ErrArchitecture, err)
	}
	return nil
}
