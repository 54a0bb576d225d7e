package runnerapi

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestEveryExportedNameIsDocumented keeps the package's godoc whole: every exported type, function, method, field,
// constant and variable has a doc comment, and one that a declaration has to itself starts with its name. A name
// declared in a group (const ( ... )) may share the group's comment, and a field may share its line with others.
func TestEveryExportedNameIsDocumented(t *testing.T) {
	fset := token.NewFileSet()
	pkgs, err := parser.ParseDir(fset, ".", func(fi fs.FileInfo) bool {
		return !strings.HasSuffix(fi.Name(), "_test.go")
	}, parser.ParseComments)
	require.NoError(t, err)
	pkg := pkgs["runnerapi"]
	require.NotNil(t, pkg, "the root package")

	var missing []string
	miss := func(pos token.Pos, what string) {
		p := fset.Position(pos)
		missing = append(missing, p.Filename+": "+what)
	}
	// startsWith reports whether doc, a declaration's own comment, begins with name (or "A name", "An name"),
	// the way godoc and gopls present it.
	startsWith := func(doc *ast.CommentGroup, name string) bool {
		text := doc.Text()
		for _, article := range []string{"", "A ", "An ", "The "} {
			if rest, ok := strings.CutPrefix(text, article+name); ok && (rest == "" || !isIdentRune(rest[0])) {
				return true
			}
		}
		return false
	}
	var fields func(owner string, list *ast.FieldList)
	fields = func(owner string, list *ast.FieldList) {
		if list == nil {
			return
		}
		for _, f := range list.List {
			for _, n := range f.Names {
				if !n.IsExported() {
					continue
				}
				switch {
				case f.Doc == nil:
					miss(n.Pos(), owner+"."+n.Name+" has no doc comment")
				case len(f.Names) == 1 && !startsWith(f.Doc, n.Name):
					miss(n.Pos(), owner+"."+n.Name+"'s doc comment does not start with its name")
				}
			}
			nested(owner, f.Type, fields)
		}
	}

	for _, file := range pkg.Files {
		for _, decl := range file.Decls {
			switch d := decl.(type) {
			case *ast.FuncDecl:
				if !d.Name.IsExported() {
					continue
				}
				name := d.Name.Name
				if d.Recv != nil {
					recv := receiverType(d.Recv.List[0].Type)
					if !ast.IsExported(recv) {
						continue // not in the package's documentation
					}
					name = recv + "." + name
				}
				switch {
				case d.Doc == nil:
					miss(d.Pos(), name+" has no doc comment")
				case !startsWith(d.Doc, d.Name.Name):
					miss(d.Pos(), name+"'s doc comment does not start with its name")
				}
			case *ast.GenDecl:
				grouped := d.Lparen.IsValid()
				for _, spec := range d.Specs {
					switch s := spec.(type) {
					case *ast.TypeSpec:
						if !s.Name.IsExported() {
							continue
						}
						doc := s.Doc
						if doc == nil && !grouped {
							doc = d.Doc
						}
						switch {
						case doc == nil && (d.Doc == nil || !grouped):
							miss(s.Pos(), s.Name.Name+" has no doc comment")
						case doc != nil && !startsWith(doc, s.Name.Name):
							miss(s.Pos(), s.Name.Name+"'s doc comment does not start with its name")
						}
						nested(s.Name.Name, s.Type, fields)
					case *ast.ValueSpec:
						for _, n := range s.Names {
							if !n.IsExported() {
								continue
							}
							doc := s.Doc
							if doc == nil && !grouped {
								doc = d.Doc
							}
							switch {
							case doc == nil && s.Comment == nil && (d.Doc == nil || !grouped):
								miss(n.Pos(), n.Name+" has no doc comment")
							case doc != nil && len(s.Names) == 1 && !startsWith(doc, n.Name):
								miss(n.Pos(), n.Name+"'s doc comment does not start with its name")
							}
						}
					}
				}
			}
		}
	}
	sort.Strings(missing)
	assert.Empty(t, missing, "exported names without a proper doc comment:\n%s", strings.Join(missing, "\n"))
}

// nested runs check over the fields of the struct or the methods of the interface that typ is, or holds.
func nested(owner string, typ ast.Expr, check func(owner string, list *ast.FieldList)) {
	switch t := typ.(type) {
	case *ast.StructType:
		check(owner, t.Fields)
	case *ast.InterfaceType:
		check(owner, t.Methods)
	case *ast.StarExpr:
		nested(owner, t.X, check)
	case *ast.ArrayType:
		nested(owner, t.Elt, check)
	case *ast.MapType:
		nested(owner, t.Value, check)
	}
}

// receiverType is the name of a method's receiver type: T for T, *T, T[P] and *T[P].
func receiverType(expr ast.Expr) string {
	for {
		switch e := expr.(type) {
		case *ast.StarExpr:
			expr = e.X
		case *ast.IndexExpr:
			expr = e.X
		case *ast.IndexListExpr:
			expr = e.X
		case *ast.Ident:
			return e.Name
		default:
			return ""
		}
	}
}

func isIdentRune(b byte) bool {
	return b == '_' || b >= '0' && b <= '9' || b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z'
}

// The package doc, RetryPolicy and IsTransient list the statuses retried as 408, 429, 500, 502, 503 and 504: no
// other status, not every 5xx.
func TestDocumentedTransientStatuses(t *testing.T) {
	documented := map[int]bool{408: true, 429: true, 500: true, 502: true, 503: true, 504: true}
	for status := 100; status < 600; status++ {
		assert.Equal(t, documented[status], IsTransient(&ErrorResponse{StatusCode: status}), "status %d", status)
	}
}

// Register's doc and the package doc say an attempt in flight may go on for up to 10 seconds after its context
// ended.
func TestDocumentedRegisterGrace(t *testing.T) {
	assert.Equal(t, 10*time.Second, registerGrace)
}
