package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/ltransfer/ltransfer/convert"
	"github.com/ltransfer/ltransfer/convert/train"
)

// progress shows how a transfer or a training run goes: a line per step (training: per
// evaluation), or on a terminal a bar redrawn in place.
type progress struct {
	w        io.Writer
	quiet    bool
	terminal bool
	name     string
	started  time.Time
}

func newProgress(w io.Writer, quiet bool) *progress {
	p := &progress{w: w, quiet: quiet}
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			p.terminal = true
		}
	}
	return p
}

func (p *progress) start(name string) {
	p.name, p.started = name, time.Now()
}

func (p *progress) step(r convert.StepReport) {
	if p.quiet {
		return
	}
	line := fmt.Sprintf("%s step %d/%d  acc %6.2f%%  loss %.4f  grad %.1fs  match %.1fs  eval %.1fs  elapsed %s",
		p.name, r.Step, r.Total-1, 100*r.Accuracy, r.Loss, r.GradSeconds, r.MatchSeconds, r.EvalSeconds, time.Since(p.started).Round(time.Second))
	p.draw(r.Step+1, r.Total, line)
}

// draw shows a line: on a terminal after a bar of done out of total, redrawn in place, elsewhere
// as a line of its own.
func (p *progress) draw(done, total int, line string) {
	if !p.terminal {
		fmt.Fprintln(p.w, line)
		return
	}
	const width = 20
	n := width * done / total
	fmt.Fprintf(p.w, "\r[%s%s] %s", strings.Repeat("=", n), strings.Repeat(" ", width-n), line)
}

func (p *progress) done() {
	if p.terminal && !p.quiet {
		fmt.Fprintln(p.w)
	}
}

// train prints a training step: on a terminal a bar redrawn in place at every step, otherwise a
// line at every evaluation.
func (p *progress) train(r train.Progress) {
	if p.quiet || (!p.terminal && r.Eval == nil) {
		return
	}
	line := fmt.Sprintf("%s epoch %d step %d/%d  lr %.3g  loss %.4f", p.name, r.Epoch, r.Step, r.Steps, r.LR, r.Loss)
	if r.Eval != nil {
		line += fmt.Sprintf("  val acc %6.2f%%  val loss %.4f", 100*r.Eval.Accuracy, r.Eval.Loss)
	}
	line += "  elapsed " + time.Since(p.started).Round(time.Second).String()
	p.draw(r.Step, r.Steps, line)
	if p.terminal && r.Eval != nil && r.Step < r.Steps {
		fmt.Fprintln(p.w) // keep every evaluation on screen
	}
}
