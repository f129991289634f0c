package lab

import (
	"bytes"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

func ms(d time.Duration) string {
	if d == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1fms", float64(d.Microseconds())/1000)
}

// Verdict is the one word a reader looks for.
func (r Result) Verdict() string {
	switch {
	case r.AuditFailed != "":
		return "AUDIT FAILED"
	case r.Oversold > 0 && r.DoubleBook > 0:
		return fmt.Sprintf("OVERSOLD %d, DOUBLE-BOOKED %d", r.Oversold, r.DoubleBook)
	case r.Oversold > 0:
		return fmt.Sprintf("OVERSOLD %d", r.Oversold)
	case r.DoubleBook > 0:
		return fmt.Sprintf("DOUBLE-BOOKED %d", r.DoubleBook)
	}
	return "clean"
}

// WriteTable prints the comparison for people.
func WriteTable(w io.Writer, results []Result) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "strategy\treq/s\tgranted\tsold_out\terrors\tfalse-busy\tp50\tp99\tmax\tsold out in\toversold\tdouble-booked\taudit\t")
	for _, r := range results {
		sellOut := "-"
		if r.SellOut > 0 {
			sellOut = ms(r.SellOut)
		}
		fmt.Fprintf(tw, "%s\t%.0f\t%d\t%d\t%d\t%d\t%s\t%s\t%s\t%s\t%d\t%d\t%s\t\n", r.Target, r.RequestsPS, r.Granted, r.SoldOut,
			r.ErrorCount(), r.FalseBusy, ms(r.P50), ms(r.P99), ms(r.Max), sellOut, r.Oversold, r.DoubleBook, r.Verdict())
	}
	return tw.Flush()
}

// JSON is the report for scripts.
func JSON(results []Result) ([]byte, error) {
	b, err := json.MarshalIndent(map[string]any{"results": results}, "", "  ")
	return append(b, '\n'), err
}

// SVG draws the comparison: per strategy, units granted against capacity
// (oversold in red), and requests per second.
func SVG(results []Result) []byte {
	const rowH, left, barW = 34, 130, 420
	h := 90 + rowH*len(results)
	var b bytes.Buffer
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="13">`+"\n", left+barW+320, h)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	title := "holdfast lab"
	if len(results) > 0 {
		r := results[0]
		title = fmt.Sprintf("holdfast lab: %s, capacity %d, %d concurrent clients", r.Scenario, r.Capacity, r.Clients)
	}
	fmt.Fprintf(&b, `<text x="10" y="22" font-size="15" font-weight="bold">%s</text>`+"\n", html.EscapeString(title))
	fmt.Fprintf(&b, `<text x="10" y="42" fill="#555">bar: units given out (audited); line: capacity; red: oversold or double-booked</text>`+"\n")
	var maxUnits int64 = 1
	for _, r := range results {
		maxUnits = max(maxUnits, r.Capacity+r.Oversold, r.Granted)
	}
	scale := float64(barW) / float64(maxUnits)
	for i, r := range results {
		y := 60 + i*rowH
		fmt.Fprintf(&b, `<text x="10" y="%d">%s</text>`+"\n", y+17, html.EscapeString(r.Target))
		ok := r.Capacity
		if r.Scenario != ScenarioPool {
			ok = min(r.Granted, r.Capacity)
		}
		if r.Oversold == 0 && r.Scenario == ScenarioPool {
			ok = min(r.Granted, r.Capacity)
		}
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%.1f" height="22" fill="#3b7dd8"><title>%d granted</title></rect>`+"\n", left, y, float64(ok)*scale, r.Granted)
		bad := r.Oversold + r.DoubleBook
		if bad > 0 {
			fmt.Fprintf(&b, `<rect x="%.1f" y="%d" width="%.1f" height="22" fill="#d62728"><title>%d oversold, %d double-booked</title></rect>`+"\n",
				float64(left)+float64(ok)*scale, y, float64(bad)*scale, r.Oversold, r.DoubleBook)
		}
		capX := float64(left) + float64(r.Capacity)*scale
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="black" stroke-width="2"/>`+"\n", capX, y-3, capX, y+25)
		color := "#2ca02c"
		if !r.Clean() {
			color = "#d62728"
		}
		fmt.Fprintf(&b, `<text x="%d" y="%d" fill="%s">%s · %.0f req/s · p99 %s</text>`+"\n", left+barW+10, y+17, color,
			html.EscapeString(r.Verdict()), r.RequestsPS, ms(r.P99))
	}
	b.WriteString("</svg>\n")
	return b.Bytes()
}

// WriteFileAtomic writes a file so that a reader (or a crash) sees the old
// file or the new one, never half of it: it writes a temporary file in the
// same directory, fsyncs it, renames it over path, and fsyncs the
// directory. If write fails, path is untouched and the temporary file is
// removed.
func WriteFileAtomic(path string, write func(io.Writer) error) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err := write(f); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Chmod(f.Name(), 0o644); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return err
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

// WriteChart writes the chart to path; the format follows the extension
// (.svg, or .png drawn from the same data).
func WriteChart(path string, results []Result) error {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".svg":
		return WriteFileAtomic(path, func(w io.Writer) error { _, err := w.Write(SVG(results)); return err })
	case ".png":
		return WriteFileAtomic(path, func(w io.Writer) error { return PNG(w, results) })
	}
	return fmt.Errorf("--chart %s: the chart is written as .svg or .png", path)
}

// Series is one line of a chart against client count.
type Series struct {
	Name   string
	Points map[int]float64 // clients → value
}

// LineChartSVG draws series against client count: one panel per metric
// (bookings/s, p99 ms), for the flash-sale benchmark.
func LineChartSVG(title string, panels map[string][]Series, order []string) []byte {
	const pw, ph, left, top, gap = 420, 260, 70, 50, 40
	colors := []string{"#3b7dd8", "#2ca02c", "#ff7f0e", "#9467bd", "#d62728", "#8c564b"}
	var b bytes.Buffer
	width := left + len(order)*(pw+gap) + 260
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">`+"\n", width, top+ph+60)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/><text x="10" y="22" font-size="15" font-weight="bold">%s</text>`+"\n", html.EscapeString(title))
	// One colour per series name, the same in every panel; the legend
	// lists every name.
	colorOf := map[string]string{}
	var names []string
	for _, name := range order {
		for _, s := range panels[name] {
			if _, ok := colorOf[s.Name]; !ok {
				colorOf[s.Name] = colors[len(names)%len(colors)]
				names = append(names, s.Name)
			}
		}
	}
	for i, n := range names {
		x := left + len(order)*(pw+gap) - gap + 15
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="12" height="12" fill="%s"/><text x="%d" y="%d">%s</text>`+"\n",
			x, top+i*20, colorOf[n], x+17, top+i*20+10, html.EscapeString(n))
	}
	for pi, name := range order {
		series := panels[name]
		x0 := left + pi*(pw+gap)
		var clients []int
		maxV := 1.0
		for _, s := range series {
			for c, v := range s.Points {
				if !slices.Contains(clients, c) {
					clients = append(clients, c)
				}
				maxV = max(maxV, v)
			}
		}
		slices.Sort(clients)
		fmt.Fprintf(&b, `<text x="%d" y="%d" font-weight="bold">%s</text>`+"\n", x0, top-8, html.EscapeString(name))
		fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/><line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/>`+"\n",
			x0, top, x0, top+ph, x0, top+ph, x0+pw, top+ph)
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="end">%.0f</text><text x="%d" y="%d" text-anchor="end">0</text>`+"\n", x0-4, top+10, maxV, x0-4, top+ph)
		xOf := func(i int) float64 {
			if len(clients) < 2 {
				return float64(x0 + pw/2)
			}
			return float64(x0) + 20 + float64(i)*float64(pw-40)/float64(len(clients)-1)
		}
		for i, c := range clients {
			fmt.Fprintf(&b, `<text x="%.0f" y="%d" text-anchor="middle">%d clients</text>`+"\n", xOf(i), top+ph+16, c)
		}
		for _, s := range series {
			var pts []string
			for i, c := range clients {
				if v, ok := s.Points[c]; ok {
					pts = append(pts, fmt.Sprintf("%.1f,%.1f", xOf(i), float64(top+ph)-v/maxV*float64(ph-10)))
				}
			}
			color := colorOf[s.Name]
			fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`+"\n", color, strings.Join(pts, " "))
			for _, p := range pts {
				xy := strings.Split(p, ",")
				fmt.Fprintf(&b, `<circle cx="%s" cy="%s" r="3" fill="%s"/>`+"\n", xy[0], xy[1], color)
			}
		}
	}
	b.WriteString("</svg>\n")
	return b.Bytes()
}
