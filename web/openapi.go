package web

import (
	"context"
	_ "embed"
	"encoding/json"
	"html/template"
	"net/http"
	"slices"
	"strings"
	"sync"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/hostfleet/provisiond/web/contract"
)

// OpenAPI is the API's description (OpenAPI 3.1, YAML): the contract the
// handlers keep and the tests hold them to.
//
//go:embed openapi.yaml
var OpenAPI []byte

// description is the loaded description and its JSON, made once.
var description = sync.OnceValues(func() (*openapi3.T, error) {
	return contract.Load(context.Background(), OpenAPI)
})

// openAPIJSON serves the description as JSON (GET /api/openapi.json).
func (s *Server) openAPIJSON(w http.ResponseWriter, r *http.Request) error {
	doc, err := description()
	if err != nil {
		return err
	}
	b, err := json.Marshal(doc)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "public, max-age=300")
	_, err = w.Write(b)
	return err
}

// docsPage renders the description for people (GET /api/docs), with
// nothing fetched from elsewhere.
var docsPage = template.Must(template.New("docs").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{.Title}} API</title>
<style>
body { font: 15px/1.5 system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
h2 { margin-top: 2.5rem; } code, pre { font: 13px ui-monospace, monospace; }
.op { border-top: 1px solid #ddd; padding: .5rem 0; } .m { font-weight: 700; display: inline-block; min-width: 4.5rem; }
.resp { color: #555; } pre { background: #f6f6f6; padding: .5rem; overflow-x: auto; }
</style></head><body>
<h1>{{.Title}} API</h1>
<p>{{.Summary}}</p><pre>{{.Description}}</pre>
<p>The description as JSON: <a href="/api/openapi.json">/api/openapi.json</a> (OpenAPI 3.1).</p>
{{range .Ops}}<div class="op" id="{{.Anchor}}">
<div><span class="m">{{.Method}}</span> <code>{{.Path}}</code> · {{.Summary}}</div>
{{if .Description}}<pre>{{.Description}}</pre>{{end}}
{{if .Params}}<div>parameters: {{range .Params}}<code>{{.}}</code> {{end}}</div>{{end}}
{{if .Body}}<div>body: <code>{{.Body}}</code></div>{{end}}
<div class="resp">answers: {{range .Responses}}<code>{{.}}</code> {{end}}</div>
</div>{{end}}
</body></html>`))

type docsOp struct {
	Method, Path, Anchor, Summary, Description, Body string
	Params, Responses                                []string
}

// docs serves the description as a page.
func (s *Server) docs(w http.ResponseWriter, r *http.Request) error {
	doc, err := description()
	if err != nil {
		return err
	}
	var ops []docsOp
	for _, path := range doc.Paths.InMatchingOrder() {
		for method, op := range doc.Paths.Value(path).Operations() {
			d := docsOp{Method: method, Path: path, Anchor: strings.ToLower(method) + path, Summary: op.Summary, Description: op.Description}
			for _, p := range op.Parameters {
				d.Params = append(d.Params, p.Value.In+" "+p.Value.Name)
			}
			if op.RequestBody != nil && op.RequestBody.Value != nil {
				for ct := range op.RequestBody.Value.Content {
					d.Body = ct
				}
			}
			if op.Responses != nil {
				for code, resp := range op.Responses.Map() {
					desc := ""
					if resp.Value != nil && resp.Value.Description != nil {
						desc = *resp.Value.Description
					}
					d.Responses = append(d.Responses, code+" "+firstLine(desc))
				}
				slices.Sort(d.Responses)
			}
			ops = append(ops, d)
		}
	}
	slices.SortFunc(ops, func(a, b docsOp) int { return strings.Compare(a.Path+" "+a.Method, b.Path+" "+b.Method) })
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	return docsPage.Execute(w, map[string]any{"Title": doc.Info.Title, "Summary": doc.Info.Summary,
		"Description": doc.Info.Description, "Ops": ops})
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}
