// Package errwrap adds where an error happened to its message without repeating the package
// prefix: a layer's errors read "convert: step 3: the data's examples ...", not "convert: step
// 3: convert: the data's examples ...", while errors.Is and errors.As still see the cause.
package errwrap

import "strings"

// At returns err with the message "pkg: where: cause", where cause is err's message without a
// leading "pkg: ". It returns nil when err is nil.
func At(pkg, where string, err error) error {
	if err == nil {
		return nil
	}
	return &located{msg: pkg + ": " + where + ": " + strings.TrimPrefix(err.Error(), pkg+": "), err: err}
}

// located is an error with its place in the message.
type located struct {
	msg string
	err error
}

func (e *located) Error() string { return e.msg }

// Unwrap returns the cause.
func (e *located) Unwrap() error { return e.err }
