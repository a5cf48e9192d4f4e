package convert

import (
	"fmt"
	"os"
	"runtime/pprof"
	"testing"

	"github.com/ltransfer/ltransfer/align"
	"github.com/ltransfer/ltransfer/convert/dataset"
	"github.com/ltransfer/ltransfer/graph"
)

func TestZZProfile(t *testing.T) {
	src, err := LoadTrajectory("/tmp/lm-tv/alex-traj")
	if err != nil { t.Fatal(err) }
	init, err := graph.Load("/tmp/lm-tv/s3/alexnet-distinct.onnx")
	if err != nil { t.Fatal(err) }
	data, err := dataset.Open("npz:/tmp/lm-tv/data.npz", dataset.Options{})
	if err != nil { t.Fatal(err) }
	sch, _ := ParseSchedule("cosine"); opt := Options{Method: os.Getenv("ZZM"), Schedule: sch, Steps: 2, Batch: 2, GradBatches: 1, NormBatches: 1, Seed: 1, Train: data, Val: data}
	_, err = Transfer(src, init, opt, func(r StepReport, p align.Params) error {
		f, _ := os.Create(fmt.Sprintf("/tmp/lm-heap-%d.out", r.Step))
		defer f.Close()
		return pprof.WriteHeapProfile(f)
	})
	if err != nil { t.Fatal(err) }
}
