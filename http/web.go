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
		w.Header().Set("Cache-Control", "no-cache")
		http.ServeFileFS(w, r, sub, "index.html")
	})
	s.mux.Handle("GET /static/", http.StripPrefix("/static/", files))
}
