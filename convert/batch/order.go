package batch

import (
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// link finds the jobs whose outputs each job reads and orders the jobs so that those come first.
func (m *Manifest) link() error {
	byOut := map[string]*Job{}
	for _, j := range m.Jobs {
		byOut[absPath(j.Out)] = j
	}
	for _, j := range m.Jobs {
		for _, in := range j.inputs() {
			// The producer's output is the input or a folder holding it.
			for p := absPath(in); ; p = filepath.Dir(p) {
				if k, ok := byOut[p]; ok && k != j && !slices.Contains(j.after, k) {
					j.after = append(j.after, k)
				}
				if filepath.Dir(p) == p {
					break
				}
			}
		}
	}
	const (
		visiting = iota + 1
		visited
	)
	state := map[*Job]int{}
	var stack []*Job
	var visit func(j *Job) error
	visit = func(j *Job) error {
		switch state[j] {
		case visited:
			return nil
		case visiting:
			var ids []string
			for _, s := range stack[slices.Index(stack, j)+1:] {
				ids = append(ids, strconv.Quote(s.ID))
			}
			ids = append(ids, strconv.Quote(j.ID))
			return &ManifestError{Path: m.Path, Line: j.line, Job: j.ID, Err: fmt.Errorf("jobs read each other's outputs: %q reads the output of %s",
				j.ID, strings.Join(ids, ", which reads the output of "))}
		}
		state[j] = visiting
		stack = append(stack, j)
		for _, k := range j.after {
			if err := visit(k); err != nil {
				return err
			}
		}
		stack = stack[:len(stack)-1]
		state[j] = visited
		m.order = append(m.order, j)
		return nil
	}
	for _, j := range m.Jobs {
		if err := visit(j); err != nil {
			return err
		}
	}
	return nil
}

// absPath is a path in one spelling, for comparisons.
func absPath(p string) string {
	if abs, err := filepath.Abs(p); err == nil {
		return abs
	}
	return filepath.Clean(p)
}
