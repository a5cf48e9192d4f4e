package batch

import (
	"encoding/json"
	"sync"

	"github.com/ltransfer/ltransfer/convert/dataset"
)

// dataEntry is a data source opened once for all the jobs of a batch that use it.
type dataEntry struct {
	once sync.Once
	src  dataset.Source
	err  error
}

// open returns the split of the job's data, as the transfer and eval commands select it: the
// validation set is val_data's test split or the end of data's training set, limited by
// val_limit; train and test are limited by limit.
func (r *batchRun) open(s jobSpec, split dataset.Split) (dataset.Source, error) {
	opt := dataset.Options{Split: split, ValFraction: s.ValFraction, Classes: s.Classes, Relabel: s.Relabel, Limit: s.Limit, Mean: s.Mean, Std: s.Std}
	spec := s.Data
	if split == dataset.SplitVal {
		opt.Limit = s.ValLimit
		if s.ValData != "" {
			spec, opt.Split = s.ValData, dataset.SplitTest
		}
	}
	key, err := json.Marshal(struct {
		Spec string
		Opt  dataset.Options
	}{spec, opt})
	if err != nil {
		return nil, err
	}
	r.dataMu.Lock()
	e, ok := r.data[string(key)]
	if !ok {
		e = &dataEntry{}
		r.data[string(key)] = e
	}
	r.dataMu.Unlock()
	e.once.Do(func() { e.src, e.err = dataset.Open(spec, opt) })
	return e.src, e.err
}
