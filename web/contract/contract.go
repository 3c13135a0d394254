// Package contract is the API's OpenAPI description (openapi.yaml in
// package web, embedded there) made usable: loaded and validated once, and
// a checker that holds requests and answers to it, for the tests of every
// package that calls the API.
package contract

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"
)

// Load parses and validates the description.
func Load(ctx context.Context, yaml []byte) (*openapi3.T, error) {
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(yaml)
	if err != nil {
		return nil, fmt.Errorf("parse the OpenAPI description: %w", err)
	}
	if err := doc.Validate(ctx); err != nil {
		return nil, fmt.Errorf("the OpenAPI description is not valid: %w", err)
	}
	return doc, nil
}

// Checker is an http.RoundTripper that holds every request a test sends
// and every answer it gets to the description: a request the description
// refuses must be answered with a 4xx, and every answer must be one the
// description allows (its status, content type and body), so that an
// undocumented field, status or route fails the test. It tells Report
// what does not hold.
type Checker struct {
	doc    *openapi3.T
	router routers.Router
	next   http.RoundTripper
	report func(error)
}

// pages lets answers in HTML (the console's page, the docs) be checked
// like plain text: kin-openapi decodes only the types it is told of.
var pages sync.Once

// NewChecker returns a Checker of doc sending through next (nil for
// http.DefaultTransport).
func NewChecker(doc *openapi3.T, next http.RoundTripper, report func(error)) (*Checker, error) {
	pages.Do(func() {
		openapi3filter.RegisterBodyDecoder("text/html", func(body io.Reader, _ http.Header, _ *openapi3.SchemaRef, _ openapi3filter.EncodingFn) (any, error) {
			b, err := io.ReadAll(body)
			return string(b), err
		})
	})
	router, err := legacy.NewRouter(doc)
	if err != nil {
		return nil, err
	}
	if next == nil {
		next = http.DefaultTransport
	}
	return &Checker{doc: doc, router: router, next: next, report: report}, nil
}

// Client returns an HTTP client that sends through the checker.
func (c *Checker) Client() *http.Client { return &http.Client{Transport: c} }

// Undescribed reports whether path is outside the description on purpose:
// noVNC's static modules.
func Undescribed(path string) bool { return strings.HasPrefix(path, "/console/novnc/") }

// RoundTrip implements http.RoundTripper.
func (c *Checker) RoundTrip(req *http.Request) (*http.Response, error) {
	if Undescribed(req.URL.Path) {
		return c.next.RoundTrip(req)
	}
	what := req.Method + " " + req.URL.RequestURI()
	route, params, routeErr := c.router.FindRoute(req)
	var input *openapi3filter.RequestValidationInput
	var requestErr error
	if routeErr == nil {
		body, err := readAll(&req.Body)
		if err != nil {
			return nil, err
		}
		probe := req.Clone(req.Context())
		probe.Body = io.NopCloser(bytes.NewReader(body))
		input = &openapi3filter.RequestValidationInput{Request: probe, PathParams: params, Route: route,
			Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, MultiError: true}}
		requestErr = openapi3filter.ValidateRequest(req.Context(), input)
		input.Request = req
	}
	res, err := c.next.RoundTrip(req)
	if err != nil {
		return res, err
	}
	switch {
	case routeErr != nil:
		// A route the description does not have: only a 404 or 405 in
		// the envelope may answer it.
		if res.StatusCode != http.StatusNotFound && res.StatusCode != http.StatusMethodNotAllowed {
			c.report(fmt.Errorf("%s: the description has no such route (%v), but the API answered %d", what, routeErr, res.StatusCode))
		}
		return res, c.checkError(what, res)
	case requestErr != nil && res.StatusCode < 400:
		c.report(fmt.Errorf("%s: the API accepted (%d) a request its description refuses: %v", what, res.StatusCode, requestErr))
	}
	if strings.HasPrefix(res.Header.Get("Content-Type"), "text/event-stream") || res.StatusCode == http.StatusSwitchingProtocols {
		// A stream is checked by its status and type only: its body does
		// not end.
		if res.StatusCode != http.StatusOK && res.StatusCode != http.StatusSwitchingProtocols || route.Operation.Responses.Status(res.StatusCode) == nil {
			c.report(fmt.Errorf("%s: a stream answered %d, which the description does not allow", what, res.StatusCode))
		}
		return res, nil
	}
	body, err := readAll(&res.Body)
	if err != nil {
		return nil, err
	}
	out := &openapi3filter.ResponseValidationInput{RequestValidationInput: input, Status: res.StatusCode, Header: res.Header,
		Options: &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true}}
	out.SetBodyBytes(body)
	if err := openapi3filter.ValidateResponse(req.Context(), out); err != nil {
		c.report(fmt.Errorf("%s: answer %d %s does not keep the description: %v", what, res.StatusCode, clip(body), err))
	}
	return res, nil
}

// checkError holds an answer to an undescribed route to the error envelope.
func (c *Checker) checkError(what string, res *http.Response) error {
	body, err := readAll(&res.Body)
	if err != nil {
		return err
	}
	schema := c.doc.Components.Schemas["Error"].Value
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		c.report(fmt.Errorf("%s: answer %d is not JSON: %s", what, res.StatusCode, clip(body)))
		return nil
	}
	if err := schema.VisitJSON(v, openapi3.EnableJSONSchema2020()); err != nil {
		c.report(fmt.Errorf("%s: answer %d %s is not the error envelope: %v", what, res.StatusCode, clip(body), err))
	}
	return nil
}

// readAll reads a body and puts back a copy to read again.
func readAll(body *io.ReadCloser) ([]byte, error) {
	if *body == nil || *body == http.NoBody {
		return nil, nil
	}
	b, err := io.ReadAll(*body)
	(*body).Close()
	*body = io.NopCloser(bytes.NewReader(b))
	return b, err
}

func clip(b []byte) string {
	if len(b) > 300 {
		return string(b[:300]) + "…"
	}
	return string(b)
}
