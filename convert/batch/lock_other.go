//go:build !unix

package batch

import "os"

// flockExclusive always succeeds where flock(2) does not exist: batches there do not exclude
// each other, and two processes on one folder may break each other's jobs.
func flockExclusive(*os.File) (bool, error) { return true, nil }
