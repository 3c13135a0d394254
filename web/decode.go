package web

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strings"
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
