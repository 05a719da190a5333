package main

import (
	"fmt"
	"image/color"
	"io"
	"math"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// render draws the panels evaluated over d, two a row, as a PNG.
func render(out io.Writer, d *db, panels []panel, o renderOptions) error {
	const cols = 2
	rows := (len(panels) + cols - 1) / cols
	width, height := vg.Length(o.panelWidth)*cols, vg.Length(o.panelHeight)*vg.Length(rows)
	img := vgimg.NewWith(vgimg.UseWH(width, height+o.headerHeight), vgimg.UseDPI(96))
	dc := draw.New(img)
	dc.SetColor(color.White)
	dc.Fill(dc.Rectangle.Path())

	// The header says what the picture is.
	header := draw.Canvas{Canvas: dc.Canvas, Rectangle: vg.Rectangle{
		Min: vg.Point{X: 0, Y: height}, Max: vg.Point{X: width, Y: height + o.headerHeight}}}
	sty := draw.TextStyle{Color: color.Black, Font: font.From(plot.DefaultFont, 15), Handler: plot.DefaultTextHandler,
		XAlign: draw.XLeft, YAlign: draw.YCenter}
	header.FillText(sty, vg.Point{X: 12, Y: header.Center().Y}, o.title)

	body := draw.Canvas{Canvas: dc.Canvas, Rectangle: vg.Rectangle{Max: vg.Point{X: width, Y: height}}}
	tiles := draw.Tiles{Rows: rows, Cols: cols, PadX: 4, PadY: 4, PadTop: 2, PadBottom: 2, PadLeft: 4, PadRight: 4}
	for i, p := range panels {
		pl, err := plotPanel(p, d, o.window)
		if err != nil {
			return fmt.Errorf("%s: %w", p.title, err)
		}
		pl.Draw(tiles.At(body, i%cols, i/cols))
	}
	_, err := vgimg.PngCanvas{Canvas: img}.WriteTo(out)
	return err
}

// plotPanel is one panel as a plot: a line per curve against the seconds
// since the first scrape, broken where a curve has no value.
func plotPanel(p panel, d *db, w time.Duration) (*plot.Plot, error) {
	pl := plot.New()
	pl.Title.Text = p.title
	pl.Title.TextStyle.Font.Size = 13
	pl.X.Label.Text = "time since the first scrape (s)"
	pl.Y.Label.Text = p.unit
	pl.X.Min = 0
	pl.Y.Min = 0
	pl.Legend.Top = true
	pl.Legend.Left = true
	pl.Legend.TextStyle.Font.Size = 10
	pl.Add(plotter.NewGrid())
	curves := p.eval(d, w)
	first := d.times[0]
	ymax := 0.0
	for i, c := range curves {
		legend := c.legend
		if legend == "" {
			legend = "all"
		}
		col := plotutil.Color(i)
		var seg plotter.XYs
		segments := 0
		flush := func() error {
			if len(seg) == 0 {
				return nil
			}
			l, err := plotter.NewLine(seg)
			if err != nil {
				return err
			}
			l.Color = col
			l.Width = vg.Points(1.5)
			pl.Add(l)
			if segments == 0 {
				pl.Legend.Add(legend, l)
			}
			segments++
			seg = nil
			return nil
		}
		for _, pt := range c.points {
			if math.IsNaN(pt.v) || math.IsInf(pt.v, 0) {
				if err := flush(); err != nil {
					return nil, err
				}
				continue
			}
			seg = append(seg, plotter.XY{X: pt.t.Sub(first).Seconds(), Y: pt.v})
			ymax = max(ymax, pt.v)
		}
		if err := flush(); err != nil {
			return nil, err
		}
	}
	if len(curves) == 0 || ymax == 0 {
		pl.Y.Max = 1
	} else {
		pl.Y.Max = ymax * 1.15 // room for the legend
	}
	pl.X.Max = d.times[len(d.times)-1].Sub(first).Seconds()
	return pl, nil
}
