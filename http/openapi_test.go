package http_test

import (
	"encoding/json"
	"os"
	"os/exec"
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

// Every operation has an operationId, unique, and the document names a
// server: what client generators need.
func TestOpenAPIOperationIDs(t *testing.T) {
	s := openSQLite(t, filepath.Join(t.TempDir(), "holdfast.db"))
	var doc struct {
		Servers []struct{ URL string } `json:"servers"`
		Paths   map[string]map[string]struct {
			OperationID string `json:"operationId"`
		} `json:"paths"`
	}
	caller{base: serve(t, s, hfhttp.Config{}).URL}.want(t, "GET", "/openapi.json", "", 200, "").decode(t, &doc)
	if len(doc.Servers) == 0 || doc.Servers[0].URL == "" {
		t.Errorf("no servers entry")
	}
	seen := map[string]string{}
	for path, ops := range doc.Paths {
		for method, o := range ops {
			op := strings.ToUpper(method) + " " + path
			if o.OperationID == "" {
				t.Errorf("%s has no operationId", op)
			} else if other, dup := seen[o.OperationID]; dup {
				t.Errorf("%s and %s share operationId %q", op, other, o.OperationID)
			}
			seen[o.OperationID] = op
		}
	}
}

// writeOpenAPI writes the served document to a file.
func writeOpenAPI(t *testing.T) string {
	s := openSQLite(t, filepath.Join(t.TempDir(), "holdfast.db"))
	body := caller{base: serve(t, s, hfhttp.Config{}).URL}.want(t, "GET", "/openapi.json", "", 200, "").body
	path := filepath.Join(t.TempDir(), "openapi.json")
	if err := os.WriteFile(path, body, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// tool returns the path in env var, or skips (fails under CI=true: the
// test script installs it).
func tool(t *testing.T, env, what string) string {
	p := os.Getenv(env)
	if p == "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is not set: scripts/services.sh installs %s", env, what)
		}
		t.Skipf("%s is not set (scripts/services.sh installs %s)", env, what)
	}
	return p
}

// The document passes Redocly's recommended rules, every one an error
// (http/redocly.yaml lists the two turned off, and why).
func TestOpenAPILint(t *testing.T) {
	redocly := tool(t, "HOLDFAST_REDOCLY", "@redocly/cli")
	doc := writeOpenAPI(t)
	out, err := exec.Command(redocly, "lint", "--config", "redocly.yaml", doc).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "valid") {
		t.Fatalf("redocly lint: %v\n%s", err, out)
	}
	if regexp.MustCompile(`You have \d+ warning`).Match(out) {
		t.Fatalf("redocly lint warns:\n%s", out)
	}
}

// A standard generator (oapi-codegen, pinned) makes a Go client from the
// document, and the client compiles.
func TestOpenAPIGeneratesAGoClient(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a module with the generated client")
	}
	doc := writeOpenAPI(t)
	dir := t.TempDir()
	files := map[string]string{
		"cfg.yaml": "package: holdfastapi\ngenerate:\n  client: true\n  models: true\noutput: client.gen.go\n",
		"go.mod":   "module example.com/holdfastapi\n\ngo 1.24\n\nrequire github.com/oapi-codegen/runtime v1.9.0\n",
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, args := range [][]string{
		{"run", "github.com/oapi-codegen/oapi-codegen/v2/cmd/oapi-codegen@v2.8.2", "-config", "cfg.yaml", doc},
		{"mod", "tidy"},
		{"vet", "./..."},
	} {
		cmd := exec.Command("go", args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	gen, err := os.ReadFile(filepath.Join(dir, "client.gen.go"))
	if err != nil || !strings.Contains(string(gen), "func (c *Client) CreateHold(") {
		t.Fatalf("generated client lacks CreateHold (%v)", err)
	}
}
