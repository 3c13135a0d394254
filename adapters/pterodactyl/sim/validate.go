package sim

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/mail"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// check is one attribute of a Laravel validator: its dotted path (a
// trailing ".*" checks each element of an array), its rules as Laravel
// writes them ("required|string|max:191"), the name messages call it by
// and the database look-ups behind "exists" and "unique".
type check struct {
	field  string
	rules  string
	attr   string
	exists func(v any) bool
	unique func(v any) bool
}

// implicitRules run even when the attribute is missing, and stop the
// attribute's other rules when they fail.
var implicitRules = []string{"required", "present", "required_with", "required_without"}

var (
	alphaDash = regexp.MustCompile(`^[\pL\pM\pN_-]+$`)
	alphaNum  = regexp.MustCompile(`^[\pL\pM\pN]+$`)
)

// validate runs the checks over data in order and returns a 422
// ValidationException listing every failed rule, as the panel does.
func validate(data map[string]any, checks []check) error {
	var errs []fieldError
	for _, c := range checks {
		base, each := strings.CutSuffix(c.field, ".*")
		if !each {
			v, present := lookup(data, c.field)
			errs = append(errs, c.run(data, c.field, v, present)...)
			continue
		}
		arr, _ := lookup(data, base)
		if a, ok := arr.([]any); ok {
			for i, v := range a {
				errs = append(errs, c.run(data, fmt.Sprintf("%s.%d", base, i), v, true)...)
			}
		}
	}
	if len(errs) > 0 {
		return &apiError{status: http.StatusUnprocessableEntity, code: "ValidationException", fields: errs}
	}
	return nil
}

// lookup finds a dotted path in decoded JSON.
func lookup(data map[string]any, path string) (any, bool) {
	var cur any = data
	for part := range strings.SplitSeq(path, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[part]; !ok {
			return nil, false
		}
	}
	return cur, true
}

// filled is Laravel's validateRequired: present and not null, empty or an
// empty array.
func filled(v any, present bool) bool {
	switch v := v.(type) {
	case nil:
		return false
	case string:
		return strings.TrimSpace(v) != ""
	case []any:
		return len(v) > 0
	case map[string]any:
		return len(v) > 0
	}
	return present
}

// run checks one attribute value.
func (c check) run(data map[string]any, path string, v any, present bool) []fieldError {
	rules := strings.Split(c.rules, "|")
	attr := c.attr
	if attr == "" {
		attr = strings.ReplaceAll(path, "_", " ")
	}
	numeric := slices.Contains(rules, "numeric") || slices.Contains(rules, "integer")
	if slices.Contains(rules, "sometimes") && !present {
		return nil
	}
	if slices.Contains(rules, "nullable") && present && v == nil {
		return nil
	}
	var errs []fieldError
	for _, r := range rules {
		name, arg, _ := strings.Cut(r, ":")
		implicit := slices.Contains(implicitRules, name)
		if !implicit && !present {
			continue
		}
		msg := c.failure(data, name, arg, attr, v, present, numeric)
		if msg == "" {
			continue
		}
		errs = append(errs, fieldError{field: path, rule: name, detail: msg})
		if implicit || slices.Contains(rules, "bail") {
			break
		}
	}
	return errs
}

// failure returns the message of a failed rule, or "" when it passes.
// Unknown rules pass.
func (c check) failure(data map[string]any, name, arg, attr string, v any, present, numeric bool) string {
	others := func() (names []string, anyFilled bool) {
		for o := range strings.SplitSeq(arg, ",") {
			ov, op := lookup(data, o)
			anyFilled = anyFilled || filled(ov, op)
			names = append(names, strings.ReplaceAll(o, "_", " "))
		}
		return names, anyFilled
	}
	switch name {
	case "required":
		if !filled(v, present) {
			return fmt.Sprintf("The %s field is required.", attr)
		}
	case "present":
		if !present {
			return fmt.Sprintf("The %s field must be present.", attr)
		}
	case "required_with":
		if names, anyFilled := others(); anyFilled && !filled(v, present) {
			return fmt.Sprintf("The %s field is required when %s is present.", attr, strings.Join(names, " / "))
		}
	case "required_without":
		if names, anyFilled := others(); !anyFilled && !filled(v, present) {
			return fmt.Sprintf("The %s field is required when %s is not present.", attr, strings.Join(names, " / "))
		}
	case "string":
		if _, ok := v.(string); !ok {
			return fmt.Sprintf("The %s must be a string.", attr)
		}
	case "numeric":
		if _, ok := number(v); !ok {
			return fmt.Sprintf("The %s must be a number.", attr)
		}
	case "integer":
		if _, ok := integer(v); !ok {
			return fmt.Sprintf("The %s must be an integer.", attr)
		}
	case "boolean":
		if _, ok := boolean(v); !ok {
			return fmt.Sprintf("The %s field must be true or false.", attr)
		}
	case "array":
		switch v.(type) {
		case []any, map[string]any:
		default:
			return fmt.Sprintf("The %s must be an array.", attr)
		}
	case "in":
		if !slices.Contains(strings.Split(arg, ","), text(v)) {
			return fmt.Sprintf("The selected %s is invalid.", attr)
		}
	case "exists":
		if c.exists != nil && !c.exists(v) {
			return fmt.Sprintf("The selected %s is invalid.", attr)
		}
	case "unique":
		if c.unique != nil && !c.unique(v) {
			return fmt.Sprintf("The %s has already been taken.", attr)
		}
	case "email":
		if _, err := mail.ParseAddress(text(v)); err != nil {
			return fmt.Sprintf("The %s must be a valid email address.", attr)
		}
	case "regex":
		if re := phpRegexp(arg); re != nil && !re.MatchString(text(v)) {
			return fmt.Sprintf("The %s format is invalid.", attr)
		}
	case "alpha_dash":
		if !alphaDash.MatchString(text(v)) {
			return fmt.Sprintf("The %s may only contain letters, numbers, and dashes.", attr)
		}
	case "alpha_num":
		if !alphaNum.MatchString(text(v)) {
			return fmt.Sprintf("The %s may only contain letters and numbers.", attr)
		}
	case "min", "max", "between":
		return sizeFailure(name, arg, attr, v, numeric)
	}
	return ""
}

// sizeFailure checks min, max and between against Laravel's size of v: the
// number for numeric attributes, the element count of arrays, else the
// length in characters.
func sizeFailure(name, arg, attr string, v any, numeric bool) string {
	kind, size := "string", float64(utf8.RuneCountInString(text(v)))
	if n, ok := number(v); ok && numeric {
		kind, size = "numeric", n
	}
	switch v := v.(type) {
	case []any:
		kind, size = "array", float64(len(v))
	case map[string]any:
		kind, size = "array", float64(len(v))
	}
	lo, hi, _ := strings.Cut(arg, ",")
	bound := func(s string) float64 { f, _ := strconv.ParseFloat(s, 64); return f }
	msgs := map[string]map[string]string{
		"min":     {"numeric": "The %s must be at least %s.", "string": "The %s must be at least %s characters.", "array": "The %s must have at least %s items."},
		"max":     {"numeric": "The %s may not be greater than %s.", "string": "The %s may not be greater than %s characters.", "array": "The %s may not have more than %s items."},
		"between": {"numeric": "The %s must be between %s and %s.", "string": "The %s must be between %s and %s characters.", "array": "The %s must have between %s and %s items."},
	}
	switch {
	case name == "min" && size < bound(lo), name == "max" && size > bound(lo):
		return fmt.Sprintf(msgs[name][kind], attr, lo)
	case name == "between" && (size < bound(lo) || size > bound(hi)):
		return fmt.Sprintf(msgs[name][kind], attr, lo, hi)
	}
	return ""
}

// number reads a JSON number or numeric string, as PHP's is_numeric.
func number(v any) (float64, bool) {
	var s string
	switch v := v.(type) {
	case json.Number:
		s = v.String()
	case string:
		s = v
	default:
		return 0, false
	}
	f, err := strconv.ParseFloat(s, 64)
	return f, err == nil
}

// integer reads a whole JSON number or an integer string, as PHP's
// FILTER_VALIDATE_INT.
func integer(v any) (int, bool) {
	switch v := v.(type) {
	case json.Number:
		f, err := v.Float64()
		if err != nil || f != float64(int(f)) {
			return 0, false
		}
		return int(f), true
	case string:
		n, err := strconv.Atoi(v)
		return n, err == nil
	}
	return 0, false
}

// boolean reads Laravel's accepted booleans: true, false, 0, 1, "0", "1".
func boolean(v any) (bool, bool) {
	switch v := v.(type) {
	case bool:
		return v, true
	case json.Number, string:
		switch text(v) {
		case "0":
			return false, true
		case "1":
			return true, true
		}
	}
	return false, false
}

// text is v as PHP casts it to a string.
func text(v any) string {
	switch v := v.(type) {
	case nil:
		return ""
	case string:
		return v
	case json.Number:
		return v.String()
	case bool:
		if v {
			return "1"
		}
		return ""
	}
	return fmt.Sprint(v)
}

// phpRegexp compiles a PCRE rule like "/^[0-9-,]+$/i" into Go's syntax; a
// pattern Go cannot compile is skipped.
func phpRegexp(rule string) *regexp.Regexp {
	if len(rule) < 2 {
		return nil
	}
	end := strings.LastIndexByte(rule, rule[0])
	if end <= 0 {
		return nil
	}
	flags := ""
	for _, f := range rule[end+1:] {
		if strings.ContainsRune("imsU", f) {
			flags += string(f)
		}
	}
	pattern := rule[1:end]
	if flags != "" {
		pattern = "(?" + flags + ")" + pattern
	}
	re, err := regexp.Compile(pattern)
	if err != nil {
		return nil
	}
	return re
}

// variableChecks are the checks of an egg's variables under
// "environment.", named ":env variable" as the panel names them. An admin
// validates every variable; a user only those it may see and edit.
func variableChecks(egg *Egg, admin bool) []check {
	var out []check
	for _, v := range egg.Variables {
		if admin || (v.UserViewable && v.UserEditable) {
			out = append(out, check{field: "environment." + v.EnvVariable, rules: v.Rules, attr: v.Name + " variable"})
		}
	}
	return out
}
