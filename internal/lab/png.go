package lab

import (
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"io"

	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"
)

// PNG draws the same chart as SVG, as a picture for places that show no
// SVG (a chat, an issue tracker).
func PNG(w io.Writer, results []Result) error {
	const rowH, left, barW, top = 30, 130, 420, 56
	width, height := left+barW+300, top+rowH*len(results)+10
	img := image.NewRGBA(image.Rect(0, 0, width, height))
	draw.Draw(img, img.Bounds(), image.White, image.Point{}, draw.Src)
	text := func(x, y int, c color.Color, s string) {
		d := font.Drawer{Dst: img, Src: image.NewUniform(c), Face: basicfont.Face7x13, Dot: fixed.P(x, y)}
		d.DrawString(s)
	}
	fill := func(x0, y0, x1, y1 int, c color.Color) {
		draw.Draw(img, image.Rect(x0, y0, x1, y1), image.NewUniform(c), image.Point{}, draw.Src)
	}
	blue, red, green, black := color.RGBA{59, 125, 216, 255}, color.RGBA{214, 39, 40, 255}, color.RGBA{44, 160, 44, 255}, color.Black
	if len(results) > 0 {
		r := results[0]
		text(10, 20, black, fmt.Sprintf("holdfast lab: %s, capacity %d, %d concurrent clients", r.Scenario, r.Capacity, r.Clients))
	}
	text(10, 40, color.Gray{85}, "bar: units given out (audited); line: capacity; red: oversold or double-booked")
	var maxUnits int64 = 1
	for _, r := range results {
		maxUnits = max(maxUnits, r.Capacity+r.Oversold, r.Granted)
	}
	scale := float64(barW) / float64(maxUnits)
	for i, r := range results {
		y := top + i*rowH
		text(10, y+15, black, r.Target)
		ok := min(r.Granted, r.Capacity)
		fill(left, y, left+int(float64(ok)*scale), y+20, blue)
		if bad := r.Oversold + r.DoubleBook; bad > 0 {
			x := left + int(float64(ok)*scale)
			fill(x, y, x+int(float64(bad)*scale), y+20, red)
		}
		capX := left + int(float64(r.Capacity)*scale)
		fill(capX-1, y-3, capX+1, y+23, black)
		c := color.Color(green)
		if !r.Clean() {
			c = red
		}
		text(left+barW+10, y+15, c, fmt.Sprintf("%s  %.0f req/s  p99 %s", r.Verdict(), r.RequestsPS, ms(r.P99)))
	}
	return png.Encode(w, img)
}
