package http_test

import (
	"encoding/json"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	hfhttp "github.com/holdfast/holdfast/http"
)

func TestOpenAPIMatchesRoutes(t *testing.T) {
	s := openSQLite(t, filepath.Join(t.TempDir(), "holdfast.db"))
	srv := hfhttp.NewServer(hfhttp.Config{Store: s})
	served := caller{base: serve(t, s, hfhttp.Config{}).URL}.want(t, "GET", "/openapi.json", "", 200, "")
	var doc struct {
		OpenAPI string                                `json:"openapi"`
		Paths   map[string]map[string]json.RawMessage `json:"paths"`
	}
	served.decode(t, &doc)
	if doc.OpenAPI != "3.1.0" {
		t.Fatalf("openapi version %q", doc.OpenAPI)
	}
	var documented []string
	for path, ops := range doc.Paths {
		for method := range ops {
			documented = append(documented, strings.ToUpper(method)+" "+path)
		}
	}
	routes := slices.Clone(srv.Patterns())
	slices.Sort(documented)
	slices.Sort(routes)
	if !slices.Equal(documented, routes) {
		t.Fatalf("routes and /openapi.json differ:\nroutes:     %v\ndocumented: %v", routes, documented)
	}
	// Every schema reference resolves.
	var full map[string]any
	served.decode(t, &full)
	schemas := full["components"].(map[string]any)["schemas"].(map[string]any)
	for _, m := range regexp.MustCompile(`"#/components/schemas/(\w+)"`).FindAllStringSubmatch(string(served.body), -1) {
		if _, ok := schemas[m[1]]; !ok {
			t.Errorf("reference to missing schema %s", m[1])
		}
	}
}
