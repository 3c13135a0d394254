package web

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// maxBody bounds request bodies; every request we take is small.
const maxBody = 1 << 20

// readBody reads the request body, bounded by maxBody.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, *apiError) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, &apiError{Status: http.StatusBadRequest, Message: fmt.Sprintf("Request body is larger than %d bytes", maxBody)}
		}
		return nil, &apiError{Status: http.StatusBadRequest, Message: "Could not read the request body"}
	}
	return b, nil
}

// decodeJSON decodes a JSON object into dst and explains what is wrong with
// it in words a panel developer can act on. Unknown fields are ignored, as a
// panel may send more than we need.
func decodeJSON(body []byte, dst any) *apiError {
	if len(bytes.TrimSpace(body)) == 0 {
		return &apiError{Status: http.StatusBadRequest, Message: "Request body is required"}
	}
	if bytes.Equal(bytes.TrimSpace(body), []byte("null")) {
		// json would take null as "nothing to set" and leave dst alone.
		return &apiError{Status: http.StatusBadRequest, Message: "Request body must be a JSON object"}
	}
	if errs := checkJSONText(body); len(errs) > 0 {
		return invalid(errs...)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(dst); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) {
			if typeErr.Field == "" {
				return &apiError{Status: http.StatusBadRequest, Message: "Request body must be a JSON object"}
			}
			return invalid(fmt.Sprintf("%s must be %s", typeErr.Field, jsonKind(typeErr.Type)))
		}
		return &apiError{Status: http.StatusBadRequest, Message: "Malformed JSON body"}
	}
	if dec.More() {
		return &apiError{Status: http.StatusBadRequest, Message: "Malformed JSON body: more than one value"}
	}
	return nil
}

// jsonKind names a Go type the way JSON users know it.
func jsonKind(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "an array"
	default:
		return "an object"
	}
}

// oneOf says which values are allowed.
func oneOf(field string, allowed []string) string {
	return fmt.Sprintf("%s must be one of: %s", field, strings.Join(allowed, ", "))
}

// readOptionalJSON decodes the request's body into v when it has one; an
// empty body leaves v as it is.
func readOptionalJSON(w http.ResponseWriter, r *http.Request, v any) *apiError {
	body, aerr := readBody(w, r)
	if aerr != nil || len(body) == 0 {
		return aerr
	}
	return decodeJSON(body, v)
}

// textProblem says what is wrong with a text value that no field may hold:
// bytes that are not UTF-8 (PostgreSQL refuses them; JSON decoding would
// replace them silently) and NUL (PostgreSQL's text cannot hold it). ""
// when it is fine.
func textProblem(v string) string {
	switch {
	case !utf8.ValidString(v):
		return "must be valid UTF-8"
	case strings.ContainsRune(v, 0):
		return "must not contain NUL characters"
	}
	return ""
}

// checkJSONText finds the strings (keys and values) of a JSON body that no
// field may hold, named by their path ("plan.environment.KEY"). A body that
// is not well-formed JSON is left to the decoder to refuse.
func checkJSONText(body []byte) []string {
	if !utf8.Valid(body) {
		return []string{"the request body must be valid UTF-8"}
	}
	if !bytes.Contains(body, []byte(`\u0000`)) {
		return nil // NUL can only come escaped: a raw control character is malformed JSON
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	var errs []string
	// path holds, per open object or array, the key or index being read.
	type level struct {
		name    string
		array   bool
		index   int
		wantKey bool
	}
	var stack []*level
	where := func() string {
		var parts []string
		for _, l := range stack {
			parts = append(parts, l.name)
		}
		return cmp.Or(strings.Join(parts, "."), "the body")
	}
	// valueRead moves on after a whole value: the enclosing object wants
	// its next key, the enclosing array its next element.
	valueRead := func() {
		if len(stack) > 0 {
			if top := stack[len(stack)-1]; top.array {
				top.index++
			} else {
				top.wantKey = true
			}
		}
	}
	for {
		tok, err := dec.Token()
		if err != nil {
			return errs
		}
		var top *level
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if top != nil && !top.array && top.wantKey {
			if d, ok := tok.(json.Delim); ok && d == '}' {
				stack = stack[:len(stack)-1]
				valueRead()
				continue
			}
			key, _ := tok.(string)
			top.name, top.wantKey = "", false
			if p := textProblem(key); p != "" {
				errs = append(errs, fmt.Sprintf("%s: a field name %s", strings.TrimSuffix(where(), "."), p))
				key = "?"
			}
			top.name = key
			continue
		}
		if top != nil && top.array {
			top.name = strconv.Itoa(top.index)
		}
		switch t := tok.(type) {
		case json.Delim:
			switch t {
			case '{':
				stack = append(stack, &level{wantKey: true})
				continue
			case '[':
				stack = append(stack, &level{array: true})
				continue
			default: // ']' ends an array
				stack = stack[:len(stack)-1]
			}
		case string:
			if p := textProblem(t); p != "" {
				errs = append(errs, where()+" "+p)
			}
		}
		valueRead()
	}
}

// checkRequestText refuses query parameters and stored headers that no
// field may hold (see textProblem), naming them.
func checkRequestText(r *http.Request) *apiError {
	query, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		// r.URL.Query() would drop the pair silently, and with it a filter.
		return invalid("the query string is malformed: " + err.Error())
	}
	var errs []string
	for key, values := range query {
		if p := textProblem(key); p != "" {
			errs = append(errs, "a query parameter's name "+p)
			continue
		}
		for _, v := range values {
			if p := textProblem(v); p != "" {
				errs = append(errs, key+" "+p)
			}
		}
	}
	for _, h := range []string{"Idempotency-Key", "Last-Event-ID"} {
		if p := textProblem(r.Header.Get(h)); p != "" {
			errs = append(errs, h+" "+p)
		}
	}
	if len(errs) > 0 {
		slices.Sort(errs)
		return invalid(errs...)
	}
	return nil
}

// checkText refuses, before any handler runs (and whether it reads a body
// or not), query values, stored headers and request bodies of the API that
// hold what no field may (see textProblem): a route that takes no body must
// not act on one that is malformed either.
func checkText(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if aerr := checkRequestText(r); aerr != nil {
			aerr.write(w)
			return
		}
		if r.Body != nil && r.Body != http.NoBody && strings.HasPrefix(r.URL.Path, "/api/") {
			body, aerr := readBody(w, r)
			if aerr == nil && len(bytes.TrimSpace(body)) > 0 {
				if errs := checkJSONText(body); len(errs) > 0 {
					aerr = invalid(errs...)
				}
			}
			if aerr != nil {
				aerr.write(w)
				return
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
		}
		next.ServeHTTP(w, r)
	})
}
