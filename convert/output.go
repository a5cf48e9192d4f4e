package convert

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	"github.com/ltransfer/ltransfer/align"
	"github.com/ltransfer/ltransfer/graph"
	"github.com/ltransfer/ltransfer/params"
)

// ReportSchema is the version of the report.json layout; it changes when fields change meaning
// or disappear (new fields keep it).
const ReportSchema = 1

// Report is report.json: what went in, how it was run, and every step's figures.
type Report struct {
	Schema   int           `json:"schema_version"`
	Method   string        `json:"method"`
	Inputs   []InputFile   `json:"inputs"`
	Settings Settings      `json:"settings"`
	Groups   []GroupReport `json:"groups"`
	// Unpermuted are the parameter axes no group permutes, with the reason; DroppedGroups the
	// groups that failed the self-check (permuting them changed the outputs).
	Unpermuted    []graph.Unpermuted `json:"unpermuted"`
	DroppedGroups []graph.Dropped    `json:"dropped_groups"`
	// InitScore is the initialization evaluated as given, before the transfer; each step's gain
	// is measured against it.
	InitScore Score        `json:"init_score"`
	Steps     []StepReport `json:"steps"`
	BestStep  int          `json:"best_step"`
	Files     []string     `json:"files"`
	// Seconds is the wall time of the whole job. SetupSeconds is its part before the first step
	// (deriving and checking the symmetries, evaluating the initialization); with the steps'
	// grad, match and eval seconds it accounts for all but loading the inputs, interpolating
	// each step's point and writing the files.
	Seconds      float64 `json:"seconds"`
	SetupSeconds float64 `json:"setup_seconds"`
	// Version is the ltransfer that wrote the report: module version, revision and build, as
	// `ltransfer --version` prints them.
	Version string `json:"ltransfer_version"`
}

// InputFile names an input file with its SHA-256, so that a report says exactly what it was
// computed from.
type InputFile struct {
	Role   string `json:"role"`
	Path   string `json:"path"`
	SHA256 string `json:"sha256"`
}

// Settings are the options of a transfer as the report records them.
type Settings struct {
	Steps       int      `json:"steps"`
	Schedule    Schedule `json:"schedule"`
	Batch       int      `json:"batch"`
	GradBatches int      `json:"grad_batches"`
	NormBatches int      `json:"bn_batches"`
	Seed        uint64   `json:"seed"`
	// InitSeed is the seed the initialization was drawn from, when it was not given as a file.
	InitSeed *uint64 `json:"init_seed,omitempty"`
	Data     string  `json:"data"`
	ValData  string  `json:"val_data"`
}

// GroupReport is one permutation group.
type GroupReport struct {
	Name    string `json:"name"`
	Size    int    `json:"size"`
	Members int    `json:"members"`
}

// PermFile is perm.json: the permutation of every group at every step (index i of a group's
// permutation is the source unit that lands on unit i).
type PermFile struct {
	Schema int         `json:"schema_version"`
	Groups []string    `json:"groups"`
	Final  [][]int     `json:"final"`
	Steps  [][][]int   `json:"steps"`
	Spec   []SpecGroup `json:"spec"`
}

// SpecGroup is a group of the spec with its members, as perm.json records it.
type SpecGroup struct {
	Name    string         `json:"name"`
	Size    int            `json:"size"`
	Members []align.Member `json:"members"`
}

// HashFile returns the hex SHA-256 of a file.
func HashFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("convert: hashing %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Writer saves a transfer's steps as ONNX files in a folder: step_000.onnx .. step_K.onnx when
// steps are kept, and best.onnx and final.onnx at the end. Every file is written to a temporary
// name and renamed. Each step is written when it is given, and the Writer holds no parameters:
// when steps are not kept, the best step and the latest one so far wait in hidden files
// (.step_NNN.onnx.tmp-keep, which a batch removes with its other temporary files) until Finish
// renames them.
type Writer struct {
	Dir       string
	Model     *graph.Model
	SaveSteps bool
	SaveBest  bool
	SaveFinal bool
	Files     []string
	// best and last name the files holding the best step and the latest one so far.
	best, last string
	bestAcc    float64
}

// PrepareDir creates the output folder, refusing a path that is a file and a folder that is one
// of the inputs' folders.
func PrepareDir(dir string, inputs ...string) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	for _, in := range inputs {
		ia, err := filepath.Abs(in)
		if err != nil {
			return err
		}
		if st, err := os.Stat(in); err == nil && !st.IsDir() {
			ia = filepath.Dir(ia)
		}
		if ia == abs {
			return fmt.Errorf("convert: the output folder %s holds the input %s: choose another --out", dir, in)
		}
	}
	if st, err := os.Stat(dir); err == nil && !st.IsDir() {
		return fmt.Errorf("convert: the output path %s is a file, not a folder", dir)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("convert: %w", err)
	}
	probe, err := os.CreateTemp(dir, ".write-test-*")
	if err != nil {
		return fmt.Errorf("convert: the output folder %s is not writable: %w", dir, err)
	}
	probe.Close()
	return os.Remove(probe.Name())
}

// Step writes one step's parameters: its step file when steps are kept, else a hidden file when
// best.onnx or final.onnx may need it. p is only read during the call.
func (w *Writer) Step(step int, acc float64, p params.Set) error {
	improves := w.best == "" || acc > w.bestAcc
	var name string
	switch {
	case w.SaveSteps:
		name = fmt.Sprintf("step_%03d.onnx", step)
	case w.SaveFinal || (w.SaveBest && improves):
		name = fmt.Sprintf(".step_%03d.onnx.tmp-keep", step)
	default:
		return nil
	}
	if err := w.Model.Save(filepath.Join(w.Dir, name), p); err != nil {
		return err
	}
	if w.SaveSteps {
		w.Files = append(w.Files, name)
	}
	held := w.held()
	if improves {
		w.best, w.bestAcc = name, acc
	}
	w.last = name
	for _, old := range held {
		if !slices.Contains(w.held(), old) {
			if err := os.Remove(filepath.Join(w.Dir, old)); err != nil {
				return fmt.Errorf("convert: %w", err)
			}
		}
	}
	return nil
}

// Discard removes the hidden files the Writer holds for best.onnx and final.onnx, for a transfer
// that stops before Finish: its folder keeps the complete step files and nothing hidden.
func (w *Writer) Discard() error {
	for _, name := range w.held() {
		if err := os.Remove(filepath.Join(w.Dir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("convert: %w", err)
		}
	}
	w.best, w.last = "", ""
	return nil
}

// held returns the hidden files that best.onnx and final.onnx need now.
func (w *Writer) held() []string {
	var out []string
	if w.SaveSteps {
		return nil
	}
	if w.SaveBest && w.best != "" {
		out = append(out, w.best)
	}
	if w.SaveFinal && w.last != "" && !slices.Contains(out, w.last) {
		out = append(out, w.last)
	}
	return out
}

// Finish writes best.onnx and final.onnx from the files of the best and the last step: a hidden
// file is renamed, a step file (or a hidden file that both need) copied.
func (w *Writer) Finish() error {
	if w.SaveBest && w.best != "" {
		if err := w.place(w.best, "best.onnx", w.SaveSteps || (w.SaveFinal && w.best == w.last)); err != nil {
			return err
		}
	}
	if w.SaveFinal && w.last != "" {
		return w.place(w.last, "final.onnx", w.SaveSteps)
	}
	return nil
}

// place makes the file name of the folder hold the step file src: a copy when src is kept,
// src itself renamed otherwise.
func (w *Writer) place(src, name string, keep bool) error {
	from, to := filepath.Join(w.Dir, src), filepath.Join(w.Dir, name)
	var err error
	if keep {
		err = graph.WriteAtomic(to, func(dst io.Writer) error {
			f, err := os.Open(from)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = io.Copy(dst, f)
			return err
		})
	} else {
		err = os.Rename(from, to)
	}
	if err != nil {
		return fmt.Errorf("convert: writing %s: %w", to, err)
	}
	w.Files = append(w.Files, name)
	return nil
}

// WriteJSON writes v as indented JSON to dir/name atomically.
func WriteJSON(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("convert: %w", err)
	}
	return graph.WriteFileAtomic(path, append(data, '\n'))
}

// NewPermFile records the permutations of a transfer.
func NewPermFile(res *Result) PermFile {
	pf := PermFile{Schema: ReportSchema}
	for _, g := range res.Spec.Groups {
		pf.Groups = append(pf.Groups, g.Name)
		pf.Spec = append(pf.Spec, SpecGroup{Name: g.Name, Size: g.Size, Members: g.Members})
	}
	for _, p := range res.Perms {
		pf.Steps = append(pf.Steps, [][]int(slices.Clone(p)))
	}
	if len(res.Perms) > 0 {
		pf.Final = res.Perms[len(res.Perms)-1]
	}
	return pf
}
