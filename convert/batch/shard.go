package batch

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Shard returns the shard, in [0, count), that the job belongs to when a manifest is split
// count ways. A cryptographic hash spreads jobs evenly for any count; the low bits of a simple
// hash such as FNV-1a do not (its lowest bit is the parity of the bytes' lowest bits).
func (j *Job) Shard(count int) int {
	if count <= 1 {
		return 0
	}
	sum := sha256.Sum256([]byte(j.identity))
	return int(binary.BigEndian.Uint64(sum[:8]) % uint64(count))
}

// Shard is the part of a manifest one process runs: the jobs j with j.Shard(Count) == Index.
// The zero value, like Count 1, is the whole manifest.
type Shard struct {
	Index int `json:"index"`
	Count int `json:"count"`
}

// Check reports whether the shard is a valid one.
func (s Shard) Check() error {
	if s.Count < 0 || s.Index < 0 || (s.Count > 0 && s.Index >= s.Count) || (s.Count == 0 && s.Index != 0) {
		return fmt.Errorf("batch: shard index %d of %d shards, want an index in [0, %d)", s.Index, s.Count, max(s.Count, 1))
	}
	return nil
}

// Owns reports whether job j belongs to the shard.
func (s Shard) Owns(j *Job) bool {
	return j.Shard(s.Count) == s.Index
}

// ShardFromEnv returns the shard that a scheduler assigned to this process, from its
// environment (lookup is os.LookupEnv or a stand-in); ok is false when no scheduler variable is
// set. count, when positive, is the shard count given otherwise (a command-line flag); it
// takes precedence over the environment's.
//
//   - A Kubernetes Indexed Job sets JOB_COMPLETION_INDEX (0 .. completions-1) but not the
//     count, which must then be given.
//   - A Slurm job array sets SLURM_ARRAY_TASK_ID, which runs from SLURM_ARRAY_TASK_MIN in steps
//     of SLURM_ARRAY_TASK_STEP (1 if unset), and SLURM_ARRAY_TASK_COUNT: the index is
//     (ID - MIN) / STEP.
func ShardFromEnv(lookup func(string) (string, bool), count int) (s Shard, ok bool, err error) {
	num := func(name string, def int) (int, error) {
		v, ok := lookup(name)
		if !ok || strings.TrimSpace(v) == "" {
			if def < 0 {
				return 0, fmt.Errorf("batch: %s is not set", name)
			}
			return def, nil
		}
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil {
			return 0, fmt.Errorf("batch: %s=%q is not an integer", name, v)
		}
		return n, nil
	}
	if v, set := lookup("JOB_COMPLETION_INDEX"); set && v != "" {
		if s.Index, err = num("JOB_COMPLETION_INDEX", 0); err != nil {
			return s, true, err
		}
		if count <= 0 {
			return s, true, errors.New("batch: JOB_COMPLETION_INDEX is set but not the shard count: give the Job's completions")
		}
		s.Count = count
		return s, true, s.Check()
	}
	if v, set := lookup("SLURM_ARRAY_TASK_ID"); set && v != "" {
		id, err := num("SLURM_ARRAY_TASK_ID", 0)
		if err != nil {
			return s, true, err
		}
		lo, err := num("SLURM_ARRAY_TASK_MIN", 0)
		if err != nil {
			return s, true, err
		}
		step, err := num("SLURM_ARRAY_TASK_STEP", 1)
		if err != nil {
			return s, true, err
		}
		if step < 1 || id < lo || (id-lo)%step != 0 {
			return s, true, fmt.Errorf("batch: SLURM_ARRAY_TASK_ID %d is not SLURM_ARRAY_TASK_MIN %d plus a multiple of SLURM_ARRAY_TASK_STEP %d: use a range such as --array=0-N", id, lo, step)
		}
		s.Index, s.Count = (id-lo)/step, count
		if count <= 0 {
			if s.Count, err = num("SLURM_ARRAY_TASK_COUNT", -1); err != nil {
				return s, true, err
			}
		}
		if err := s.Check(); err != nil {
			return s, true, fmt.Errorf("%w (from SLURM_ARRAY_TASK_ID %d: the array must be a range such as --array=0-N)", err, id)
		}
		return s, true, nil
	}
	return Shard{}, false, nil
}
