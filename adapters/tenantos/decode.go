package tenantos

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Tenantos is a PHP application: the same field can come as a number or as
// a numeric string (hardware sizes are strings, counts numbers), booleans
// as true/false or 1/0, and absent values as null or "". These types read
// all of them.

// unquote returns a JSON scalar's text: a string's content, or the literal.
func unquote(data []byte) (string, error) {
	data = bytes.TrimSpace(data)
	if len(data) > 0 && data[0] == '"' {
		var s string
		if err := json.Unmarshal(data, &s); err != nil {
			return "", err
		}
		return strings.TrimSpace(s), nil
	}
	return string(data), nil
}

// flexInt is an integer sent as a number or a numeric string; a fraction
// is cut off, null and "" are 0.
type flexInt int64

// UnmarshalJSON implements json.Unmarshaler.
func (n *flexInt) UnmarshalJSON(data []byte) error {
	s, err := unquote(data)
	if err != nil {
		return err
	}
	if s == "" || s == "null" {
		*n = 0
		return nil
	}
	if i, err := strconv.ParseInt(s, 10, 64); err == nil {
		*n = flexInt(i)
		return nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return fmt.Errorf("not a number: %.40s", data)
	}
	*n = flexInt(f)
	return nil
}

// flexFloat is a number sent as a number or a numeric string; null and ""
// are 0.
type flexFloat float64

// UnmarshalJSON implements json.Unmarshaler.
func (n *flexFloat) UnmarshalJSON(data []byte) error {
	s, err := unquote(data)
	if err != nil {
		return err
	}
	if s == "" || s == "null" {
		*n = 0
		return nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return fmt.Errorf("not a number: %.40s", data)
	}
	*n = flexFloat(f)
	return nil
}

// flexBool is a boolean sent as true/false, 1/0 or "1"/"0"; null and ""
// are false.
type flexBool bool

// UnmarshalJSON implements json.Unmarshaler.
func (b *flexBool) UnmarshalJSON(data []byte) error {
	s, err := unquote(data)
	if err != nil {
		return err
	}
	switch strings.ToLower(s) {
	case "true", "1":
		*b = true
	case "false", "0", "null", "":
		*b = false
	default:
		return fmt.Errorf("not a boolean: %.40s", data)
	}
	return nil
}

// flexString is a string that may come as a number or null.
type flexString string

// UnmarshalJSON implements json.Unmarshaler.
func (s *flexString) UnmarshalJSON(data []byte) error {
	t, err := unquote(data)
	if err != nil {
		return err
	}
	if t == "null" {
		t = ""
	}
	*s = flexString(t)
	return nil
}

// panelTimeLayouts are the forms the panel writes times in: its own
// "2006-01-02 15:04:05" (UTC) and Laravel's serialized dates.
var panelTimeLayouts = []string{time.DateTime, "2006-01-02T15:04:05.000000Z", time.RFC3339Nano, "2006-01-02T15:04:05"}

// parseTime reads a panel time as UTC; zero when empty or unreadable.
func parseTime(s string) time.Time {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}
	}
	for _, layout := range panelTimeLayouts {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC()
		}
	}
	return time.Time{}
}
