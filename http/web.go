package http

import (
	"embed"
	"io/fs"
	"net/http"
)

//go:embed web
var webFiles embed.FS

// webRoutes serve the page at / and its assets, embedded in the binary:
// plain HTML, CSS and a small module of JavaScript that uses the public
// API only.
func (s *Server) webRoutes() {
	sub, _ := fs.Sub(webFiles, "web")
	files := http.FileServerFS(sub)
	s.mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		pageHeaders(w)
		w.Header().Set("Cache-Control", "no-cache")
		http.ServeFileFS(w, r, sub, "index.html")
	})
	static := http.StripPrefix("/static/", files)
	s.mux.HandleFunc("GET /static/", func(w http.ResponseWriter, r *http.Request) {
		pageHeaders(w)
		static.ServeHTTP(w, r)
	})
}

// pageHeaders keep the page to itself: its own scripts and styles only, no
// framing (clickjacking), no referrer to other sites.
func pageHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Content-Type-Options", "nosniff")
}
