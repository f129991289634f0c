// Command storegen writes the methods of the SQLite and PostgreSQL stores:
// each method of holdfast.Store, with the contract's documentation,
// forwarding to the SQL engine both share. The engine is embedded under an
// unexported name, so without these `go doc ./postgres Store` would show
// none of what a store offers.
//
//	go run ./internal/storegen          # rewrite sqlite/ and postgres/store_methods.go
//	go run ./internal/storegen -check   # exit 1 if they are out of date
package main

import (
	"bytes"
	"flag"
	"fmt"
	"go/ast"
	"go/format"
	"go/parser"
	"go/printer"
	"go/token"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// out is the file written in each backend package.
const out = "store_methods.go"

func main() {
	check := flag.Bool("check", false, "report files that are out of date instead of writing them")
	root := flag.String("root", ".", "the module's root")
	flag.Parse()
	stale, err := run(*root, !*check)
	if err != nil {
		fmt.Fprintln(os.Stderr, "storegen:", err)
		os.Exit(2)
	}
	if *check && len(stale) > 0 {
		fmt.Fprintf(os.Stderr, "storegen: out of date (run go run ./internal/storegen): %s\n", strings.Join(stale, ", "))
		os.Exit(1)
	}
}

// run generates the file of each backend; it writes them when write is
// set, and returns those that differ from what is on disk.
func run(root string, write bool) (stale []string, err error) {
	methods, err := contract(root)
	if err != nil {
		return nil, err
	}
	for _, pkg := range []string{"sqlite", "postgres"} {
		own, err := declared(filepath.Join(root, pkg))
		if err != nil {
			return nil, err
		}
		src, err := generate(pkg, methods, own)
		if err != nil {
			return nil, err
		}
		path := filepath.Join(root, pkg, out)
		if old, _ := os.ReadFile(path); bytes.Equal(old, src) {
			continue
		}
		stale = append(stale, path)
		if write {
			if err := os.WriteFile(path, src, 0o644); err != nil {
				return nil, err
			}
		}
	}
	return stale, nil
}

// method is one method of the contract, as declared in its interface.
type method struct {
	name      string
	doc       string
	iface     string
	signature *ast.FuncType
}

// contract reads holdfast.Store's interfaces, in the order Store names
// them, and their methods in declaration order.
func contract(root string) ([]method, error) {
	files, err := parseDir(root, parser.ParseComments, func(name string) bool { return true })
	if err != nil {
		return nil, err
	}
	ifaces := map[string]*ast.InterfaceType{}
	for _, f := range files {
		if f.Name.Name != "holdfast" {
			continue
		}
		for _, d := range f.Decls {
			g, ok := d.(*ast.GenDecl)
			if !ok || g.Tok != token.TYPE {
				continue
			}
			for _, spec := range g.Specs {
				ts := spec.(*ast.TypeSpec)
				if it, ok := ts.Type.(*ast.InterfaceType); ok {
					ifaces[ts.Name.Name] = it
				}
			}
		}
	}
	store := ifaces["Store"]
	if store == nil {
		return nil, fmt.Errorf("no interface Store in package holdfast")
	}
	var out []method
	var walk func(name string, it *ast.InterfaceType) error
	walk = func(name string, it *ast.InterfaceType) error {
		for _, f := range it.Methods.List {
			switch t := f.Type.(type) {
			case *ast.Ident: // an embedded contract
				sub := ifaces[t.Name]
				if sub == nil {
					return fmt.Errorf("interface %s embeds unknown %s", name, t.Name)
				}
				if err := walk(t.Name, sub); err != nil {
					return err
				}
			case *ast.FuncType:
				out = append(out, method{name: f.Names[0].Name, doc: f.Doc.Text(), iface: name, signature: qualify(t)})
			}
		}
		return nil
	}
	if err := walk("Store", store); err != nil {
		return nil, err
	}
	// And the optional contracts (capability.go): the SQL stores offer
	// them all, and go doc shows them with the rest.
	for _, name := range capabilities {
		it := ifaces[name]
		if it == nil {
			return nil, fmt.Errorf("no interface %s in package holdfast", name)
		}
		if err := walk(name, it); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// capabilities are the optional contracts the SQL stores implement.
var capabilities = []string{"Capable", "GroupLayouts", "UnitPages", "EventTail", "Configured", "StatsReporter"}

// qualify returns ft with the holdfast package's own type names
// qualified (Pool → holdfast.Pool); parameters are named p0… where the
// interface left them unnamed.
func qualify(ft *ast.FuncType) *ast.FuncType {
	var fix func(e ast.Expr) ast.Expr
	fix = func(e ast.Expr) ast.Expr {
		switch t := e.(type) {
		case *ast.Ident:
			if ast.IsExported(t.Name) {
				return &ast.SelectorExpr{X: ast.NewIdent("holdfast"), Sel: ast.NewIdent(t.Name)}
			}
		case *ast.StarExpr:
			return &ast.StarExpr{X: fix(t.X)}
		case *ast.ArrayType:
			return &ast.ArrayType{Len: t.Len, Elt: fix(t.Elt)}
		case *ast.MapType:
			return &ast.MapType{Key: fix(t.Key), Value: fix(t.Value)}
		case *ast.Ellipsis:
			return &ast.Ellipsis{Elt: fix(t.Elt)}
		case *ast.FuncType:
			return qualify(t)
		}
		return e
	}
	fields := func(fl *ast.FieldList, name bool) *ast.FieldList {
		if fl == nil {
			return nil
		}
		out := &ast.FieldList{}
		for i, f := range fl.List {
			nf := &ast.Field{Names: f.Names, Type: fix(f.Type)}
			if name && len(f.Names) == 0 {
				nf.Names = []*ast.Ident{ast.NewIdent(fmt.Sprintf("p%d", i))}
			}
			out.List = append(out.List, nf)
		}
		return out
	}
	return &ast.FuncType{Params: fields(ft.Params, true), Results: fields(ft.Results, false)}
}

// declared lists the methods a backend's Store declares itself (outside
// the generated file): they are not generated.
func declared(dir string) (map[string]bool, error) {
	files, err := parseDir(dir, 0, func(name string) bool { return name != out })
	if err != nil {
		return nil, err
	}
	own := map[string]bool{}
	for _, f := range files {
		for _, d := range f.Decls {
			fd, ok := d.(*ast.FuncDecl)
			if !ok || fd.Recv == nil {
				continue
			}
			if st, ok := fd.Recv.List[0].Type.(*ast.StarExpr); ok {
				if id, ok := st.X.(*ast.Ident); ok && id.Name == "Store" {
					own[fd.Name.Name] = true
				}
			}
		}
	}
	return own, nil
}

// parseDir parses a directory's Go files, tests left out, that keep says
// to keep. (The packages are plain: no build tags choose their files.)
func parseDir(dir string, mode parser.Mode, keep func(name string) bool) ([]*ast.File, error) {
	paths, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		return nil, err
	}
	fset := token.NewFileSet()
	var files []*ast.File
	for _, p := range paths {
		name := filepath.Base(p)
		if strings.HasSuffix(name, "_test.go") || !keep(name) {
			continue
		}
		f, err := parser.ParseFile(fset, p, nil, mode)
		if err != nil {
			return nil, err
		}
		files = append(files, f)
	}
	return files, nil
}

func generate(pkg string, methods []method, own map[string]bool) ([]byte, error) {
	var b bytes.Buffer
	fmt.Fprintf(&b, "// Code generated by go run ./internal/storegen; DO NOT EDIT.\n\npackage %s\n\n", pkg)
	b.WriteString("import (\n\t\"context\"\n\t\"time\"\n\n\t\"github.com/holdfast/holdfast\"\n)\n\n")
	b.WriteString("// The methods of holdfast.Store, each with its contract's documentation,\n// forwarding to the SQL engine the backends share.\n\n")
	fset := token.NewFileSet()
	iface := ""
	for _, m := range methods {
		if own[m.name] {
			continue
		}
		if m.iface != iface {
			iface = m.iface
			fmt.Fprintf(&b, "// ---- holdfast.%s ----\n\n", iface)
		}
		for _, line := range strings.Split(strings.TrimRight(m.doc, "\n"), "\n") {
			if line == "" && m.doc == "" {
				continue
			}
			b.WriteString(strings.TrimRight("// "+line, " ") + "\n")
		}
		if m.doc == "" {
			fmt.Fprintf(&b, "// %s is holdfast.%s's.\n", m.name, iface)
		}
		var sig bytes.Buffer
		if err := printer.Fprint(&sig, fset, m.signature); err != nil {
			return nil, err
		}
		// printer prints "func(params) results": the method takes its shape.
		fmt.Fprintf(&b, "func (s *Store) %s%s {\n\treturn s.engine.%s(%s)\n}\n\n", m.name, strings.TrimPrefix(sig.String(), "func"), m.name, args(m.signature))
	}
	src, err := format.Source(b.Bytes())
	if err != nil {
		return nil, fmt.Errorf("%s: %w\n%s", pkg, err, b.Bytes())
	}
	// Drop imports a package's methods do not use.
	for _, imp := range []string{"time", "context"} {
		if !bytes.Contains(src[bytes.Index(src, []byte("\n)\n")):], []byte(imp+".")) {
			src = bytes.Replace(src, []byte("\t\""+imp+"\"\n"), nil, 1)
		}
	}
	return format.Source(src)
}

// args is the call's arguments: every parameter, a variadic one spread.
func args(ft *ast.FuncType) string {
	var out []string
	for _, f := range ft.Params.List {
		_, variadic := f.Type.(*ast.Ellipsis)
		for _, n := range f.Names {
			a := n.Name
			if variadic {
				a += "..."
			}
			out = append(out, a)
		}
	}
	return strings.Join(slices.Clip(out), ", ")
}
