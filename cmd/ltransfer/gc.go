package main

import (
	"os"
	"runtime/debug"
)

// transferGOGC is the garbage collector's target (GOGC, in percent of the live heap) of the
// commands that transfer. A transfer's heap is mostly large pointer-free buffers that stay live
// (the checkpoints, the score matrix, the kept gradients) while every gradient and evaluation
// leaves garbage behind: with Go's default of 100 the heap would grow to twice the live data
// between collections. Marking pointer-free memory is cheap, so collecting at 5% costs little
// time.
const transferGOGC = 5

// lowerGC lowers the process's garbage collector target to transferGOGC, unless the GOGC
// environment variable sets it or it is already lower. It is a process-wide setting, so the
// commands set it, not the library.
func lowerGC() {
	if os.Getenv("GOGC") != "" {
		return
	}
	if old := debug.SetGCPercent(transferGOGC); old < transferGOGC { // -1: collection is off
		debug.SetGCPercent(old)
	}
}
