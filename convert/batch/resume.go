package batch

import (
	"bytes"
	"encoding/json"
	"os"
	"slices"
	"time"

	"github.com/ltransfer/ltransfer/convert"
)

// settings returns, as a JSON object, the settings among the fields that the spec's kind uses:
// what decides a job's outputs besides the content of its input files.
func (s jobSpec) settings() json.RawMessage {
	all, err := json.Marshal(s)
	if err != nil {
		return nil // not reached: parsing accepts no value that JSON cannot hold
	}
	fields := decodeObject(all)
	for name, f := range specFields {
		if !f.setting || !slices.Contains(f.kinds, s.Kind) {
			delete(fields, name)
		}
	}
	return canonical(fields)
}

// decodeObject decodes a JSON object with its numbers as written (a uint64 seed stays exact);
// it returns nil for anything else.
func decodeObject(data []byte) map[string]any {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var fields map[string]any
	if dec.Decode(&fields) != nil {
		return nil
	}
	return fields
}

// canonical returns a decoded JSON object in one spelling: no spaces, keys sorted.
func canonical(fields map[string]any) json.RawMessage {
	out, err := json.Marshal(fields)
	if err != nil {
		return nil
	}
	return out
}

// sameSettings reports whether recorded settings are s's.
func (s jobSpec) sameSettings(recorded json.RawMessage) bool {
	fields, want := decodeObject(recorded), s.settings()
	return fields != nil && want != nil && bytes.Equal(canonical(fields), want)
}

// readJSON decodes the JSON file at path into v.
func readJSON(path string, v any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return json.Unmarshal(data, v)
}

// hashEntry is a file's SHA-256 with what identifies the version hashed.
type hashEntry struct {
	size int64
	mod  time.Time
	sum  string
}

// hash returns the SHA-256 of a file, computed once per version of the file in a batch (the
// jobs of an ensemble share their trajectory).
func (r *batchRun) hash(path string) (string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return "", err
	}
	key := absPath(path)
	r.hashMu.Lock()
	e, ok := r.hashes[key]
	r.hashMu.Unlock()
	if ok && e.size == st.Size() && e.mod.Equal(st.ModTime()) {
		return e.sum, nil
	}
	sum, err := convert.HashFile(path)
	if err != nil {
		return "", err
	}
	r.hashMu.Lock()
	r.hashes[key] = hashEntry{size: st.Size(), mod: st.ModTime(), sum: sum}
	r.hashMu.Unlock()
	return sum, nil
}
