package http

import (
	"mime"
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/holdfast/holdfast"
)

// guard refuses, before authentication, what no route should see.
//
// Open mode (no admin key, loopback only) trusts whoever can connect — but
// a web page the user visits can make the browser connect: a cross-site
// form or text/plain POST, or a page whose own name a DNS rebinding points
// at 127.0.0.1. So an open server answers only to a loopback Host and
// refuses requests a browser marks as coming from another site.
//
// Everywhere, a request body must be JSON (a browser cannot send
// application/json cross-site without a CORS preflight, which this server
// never grants).
func (s *Server) guard(r *http.Request) error {
	if s.cfg.AdminKey == "" {
		if !loopbackHost(r.Host) {
			return holdfast.Errorf(CodeMisdirected, "an open server (no admin key) answers only to localhost or a loopback address, not %q", r.Host)
		}
		if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" && site != "none" {
			return holdfast.Errorf(CodeCrossSite, "a request from another site (Sec-Fetch-Site: %s) is refused by an open server", site)
		}
		if origin := r.Header.Get("Origin"); origin != "" {
			if u, err := url.Parse(origin); err != nil || u.Host != r.Host {
				return holdfast.Errorf(CodeCrossSite, "a request from origin %q is refused by an open server", origin)
			}
		}
	}
	if r.ContentLength != 0 && r.Body != nil && r.Body != http.NoBody {
		mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
		if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
			return holdfast.Errorf(CodeUnsupportedMediaType, "send the body as Content-Type: application/json")
		}
	}
	return nil
}

// loopbackHost reports whether a Host header names this machine.
func loopbackHost(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
