package errwrap

import (
	"errors"
	"io/fs"
	"testing"
)

func TestAt(t *testing.T) {
	cause := errors.New("convert: no examples to evaluate on")
	for _, c := range []struct {
		pkg, where string
		err        error
		want       string
	}{
		{"convert", "step 3", cause, "convert: step 3: no examples to evaluate on"},
		{"train", "step 3", cause, "train: step 3: convert: no examples to evaluate on"},
		{"batch", `m.yaml: job "a"`, fs.ErrNotExist, `batch: m.yaml: job "a": file does not exist`},
	} {
		err := At(c.pkg, c.where, c.err)
		if err.Error() != c.want || !errors.Is(err, c.err) {
			t.Errorf("At(%q, %q, %v) = %q (is the cause: %v), want %q", c.pkg, c.where, c.err, err, errors.Is(err, c.err), c.want)
		}
	}
	if At("convert", "step 1", nil) != nil {
		t.Error("a nil error was wrapped")
	}
}
