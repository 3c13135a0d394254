package simkit

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// DecodeSnapshot reads a simulator's saved state into v after checking its
// "version" field is want, so that a snapshot of another version is
// refused as such rather than misread. Fields v does not have, and data
// after the snapshot, are refused too.
func DecodeSnapshot(data []byte, want int, v any) error {
	var head struct {
		Version *int `json:"version"`
	}
	if err := json.Unmarshal(data, &head); err != nil {
		return fmt.Errorf("not a snapshot written by Save: %w", err)
	}
	switch {
	case head.Version == nil:
		return errors.New(`not a snapshot written by Save: it has no "version"`)
	case *head.Version != want:
		return fmt.Errorf("snapshot version %d is not supported; this simulator reads version %d", *head.Version, want)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("version %d snapshot: %w", want, err)
	}
	if dec.More() {
		return errors.New("data after the snapshot")
	}
	return nil
}
