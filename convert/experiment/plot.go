package experiment

import (
	"fmt"
	"image/color"
	"io"
	"math"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// The size of experiment.png in pixels, and its resolution.
const (
	PlotWidth  = 1200
	PlotHeight = 480
	plotDPI    = 96
)

// WritePNG draws the report as a PNG image of PlotWidth x PlotHeight pixels with two panels:
// on the left, validation accuracy against fine-tuning steps, one line per method and the
// baseline, its axis starting at the lowest accuracy after the first evaluation (rounded down
// to 5%) so that the curves near the top stay apart; on the right, validation accuracy along
// the transfer steps, one line per method. Both show the target run's final accuracy as a
// dashed horizontal line.
func (r *Report) WritePNG(w io.Writer) error {
	methods := append(append([]string{}, r.Settings.Methods...), r.Baseline)
	finetune := r.panel(methods, PhaseFinetune, "fine-tuning from the transferred parameters", "fine-tuning step")
	transfer := r.panel(methods, PhaseTransfer, "transfer", "transfer step")
	low := math.Inf(1)
	for _, row := range r.Rows {
		if row.Phase == PhaseFinetune && row.Step > 0 {
			low = math.Min(low, 100*row.ValAccuracy)
		}
	}
	if !math.IsInf(low, 1) {
		finetune.Y.Min, finetune.Y.Max = 5*math.Floor(low/5), 100
	}
	for _, p := range []*plotPanel{finetune, transfer} {
		if p.err != nil {
			return fmt.Errorf("experiment: plotting: %w", p.err)
		}
	}
	width := vg.Length(PlotWidth) / plotDPI * vg.Inch
	height := vg.Length(PlotHeight) / plotDPI * vg.Inch
	img := vgimg.NewWith(vgimg.UseWH(width, height), vgimg.UseDPI(plotDPI))
	tiles := draw.Tiles{Rows: 1, Cols: 2, PadX: vg.Centimeter, PadTop: vg.Millimeter * 4,
		PadBottom: vg.Millimeter * 2, PadLeft: vg.Millimeter * 2, PadRight: vg.Millimeter * 2}
	canvases := plot.Align([][]*plot.Plot{{finetune.Plot, transfer.Plot}}, tiles, draw.New(img))
	finetune.Draw(canvases[0][0])
	transfer.Draw(canvases[0][1])
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(w); err != nil {
		return fmt.Errorf("experiment: plotting: %w", err)
	}
	return nil
}

// plotPanel is a plot being built; err is the first error of building it.
type plotPanel struct {
	*plot.Plot
	err error
}

// panel plots the rows of one phase: accuracy in percent against the step, one line per
// method that has rows (each method keeps its color across panels), and the target's final
// accuracy.
func (r *Report) panel(methods []string, phase, title, xLabel string) *plotPanel {
	p := &plotPanel{Plot: plot.New()}
	p.Title.Text = fmt.Sprintf("%s (%s scenario)", title, r.Settings.Scenario)
	p.X.Label.Text = xLabel
	p.Y.Label.Text = "validation accuracy (%)"
	p.Legend.Top = false
	p.Add(plotter.NewGrid())
	last := 1
	for i, method := range methods {
		var xys plotter.XYs
		for _, row := range r.Rows {
			if row.Method == method && row.Phase == phase {
				xys = append(xys, plotter.XY{X: float64(row.Step), Y: 100 * row.ValAccuracy})
				last = max(last, row.Step)
			}
		}
		if len(xys) == 0 {
			continue
		}
		p.add(method, xys, plotutil.Color(i), nil)
	}
	target := 100 * r.TargetFinal.Accuracy
	p.add(fmt.Sprintf("target final (%.2f%%)", target), plotter.XYs{{X: 0, Y: target}, {X: float64(last), Y: target}},
		color.Black, []vg.Length{vg.Points(4), vg.Points(3)})
	return p
}

// add draws a line with its legend entry.
func (p *plotPanel) add(name string, xys plotter.XYs, c color.Color, dashes []vg.Length) {
	if p.err != nil {
		return
	}
	line, err := plotter.NewLine(xys)
	if err != nil {
		p.err = err
		return
	}
	line.Color, line.Width, line.Dashes = c, vg.Points(1.5), dashes
	p.Add(line)
	p.Legend.Add(name, line)
}
