package sim

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// validator collects field errors with Laravel's messages and order, and
// turns them into its 422 answer.
type validator struct {
	in     map[string]any
	fields []string
	errs   map[string][]string
}

func newValidator(in map[string]any) *validator {
	return &validator{in: in, errs: map[string][]string{}}
}

// fail records a message for field; ":attribute" becomes the field's name
// as Laravel prints it ("profileId" -> "profile id").
func (v *validator) fail(field, msg string) {
	if _, seen := v.errs[field]; !seen {
		v.fields = append(v.fields, field)
	}
	v.errs[field] = append(v.errs[field], strings.ReplaceAll(msg, ":attribute", attribute(field)))
}

// err is nil or the 422 answer: the first message, a count of the others,
// and every message per field.
func (v *validator) err() error {
	if len(v.fields) == 0 {
		return nil
	}
	n := -1
	for _, msgs := range v.errs {
		n += len(msgs)
	}
	msg := v.errs[v.fields[0]][0]
	switch {
	case n == 1:
		msg += " (and 1 more error)"
	case n > 1:
		msg += fmt.Sprintf(" (and %d more errors)", n)
	}
	return &apiError{Status: http.StatusUnprocessableEntity, Message: msg, Errors: v.errs}
}

// present reports whether field was sent; null, "" and [] count as absent,
// as for Laravel's required rule.
func (v *validator) present(field string) bool {
	x, ok := v.in[field]
	if a, isArray := x.([]any); isArray {
		return len(a) > 0
	}
	return ok && x != nil && x != ""
}

func (v *validator) required(field string) bool {
	if !v.present(field) {
		v.fail(field, "The :attribute field is required.")
		return false
	}
	return true
}

// integer reads an optional integer field; numeric strings count, as in
// Laravel.
func (v *validator) integer(field string) (int, bool) {
	if !v.present(field) {
		return 0, false
	}
	n, ok := toInt(v.in[field])
	if !ok {
		v.fail(field, "The :attribute field must be an integer.")
	}
	return n, ok
}

// str reads an optional string field of at most max characters.
func (v *validator) str(field string, max int) (string, bool) {
	if !v.present(field) {
		return "", false
	}
	s, ok := v.in[field].(string)
	switch {
	case !ok:
		v.fail(field, "The :attribute field must be a string.")
	case len(s) > max:
		v.fail(field, fmt.Sprintf("The :attribute field must not be greater than %d characters.", max))
		ok = false
	}
	return s, ok
}

// boolean reads an optional field Laravel's boolean rule accepts: true,
// false, 1, 0, "1", "0".
func (v *validator) boolean(field string) (bool, bool) {
	if !v.present(field) {
		return false, false
	}
	switch x := v.in[field].(type) {
	case bool:
		return x, true
	case json.Number, string:
		switch fmt.Sprint(x) {
		case "1":
			return true, true
		case "0":
			return false, true
		}
	}
	v.fail(field, "The :attribute field must be true or false.")
	return false, false
}

// oneOf reads an optional string field that must be one of allowed.
func (v *validator) oneOf(field string, allowed ...string) (string, bool) {
	if !v.present(field) {
		return "", false
	}
	s, ok := v.in[field].(string)
	for _, a := range allowed {
		if ok && s == a {
			return s, true
		}
	}
	v.fail(field, "The selected :attribute is invalid.")
	return "", false
}

// array reads an optional array field; an empty array is present.
func (v *validator) array(field string) ([]any, bool) {
	x, ok := v.in[field]
	if !ok || x == nil {
		return nil, false
	}
	a, ok := x.([]any)
	if !ok {
		v.fail(field, "The :attribute field must be an array.")
	}
	return a, ok
}

// stringList reads an optional array of strings, checking each item.
func (v *validator) stringList(field string) ([]string, bool) {
	a, ok := v.array(field)
	if !ok {
		return nil, false
	}
	out := make([]string, 0, len(a))
	for i, x := range a {
		s, isStr := x.(string)
		if !isStr {
			v.fail(fmt.Sprintf("%s.%d", field, i), "The :attribute field must be a string.")
			ok = false
		}
		out = append(out, s)
	}
	return out, ok
}

// intList reads an optional array of integers, checking each item.
func (v *validator) intList(field string) ([]int, bool) {
	a, ok := v.array(field)
	if !ok {
		return nil, false
	}
	out := make([]int, 0, len(a))
	for i, x := range a {
		n, isInt := toInt(x)
		if !isInt {
			v.fail(fmt.Sprintf("%s.%d", field, i), "The :attribute field must be an integer.")
			ok = false
		}
		out = append(out, n)
	}
	return out, ok
}

// date reads an optional date field in the forms Laravel's date rule and
// the Tenantos examples use; times without a zone are UTC.
func (v *validator) date(field string) (time.Time, bool) {
	s, ok := v.str(field, 64)
	if !ok {
		return time.Time{}, false
	}
	for _, layout := range []string{time.RFC3339, "2006-01-02T15:04:05", time.DateTime, time.DateOnly} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, true
		}
	}
	v.fail(field, "The :attribute field must be a valid date.")
	return time.Time{}, false
}

func toInt(x any) (int, bool) {
	switch x := x.(type) {
	case json.Number:
		f, err := x.Float64()
		if err != nil || f != math.Trunc(f) || math.Abs(f) > 1<<53 {
			return 0, false
		}
		return int(f), true
	case string:
		n, err := strconv.Atoi(strings.TrimSpace(x))
		return n, err == nil
	}
	return 0, false
}

// attribute is a field name as Laravel's validator prints it: snake case
// with spaces.
func attribute(field string) string {
	var b strings.Builder
	for i, r := range field {
		switch {
		case r == '_':
			b.WriteByte(' ')
		case unicode.IsUpper(r):
			if i > 0 {
				b.WriteByte(' ')
			}
			b.WriteRune(unicode.ToLower(r))
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

var hostnameRE = regexp.MustCompile(`^(?i)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$`)
