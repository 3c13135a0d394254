package sims

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// snapshotter is a simulator whose state can be kept between runs.
type snapshotter interface {
	Save(w io.Writer) error
	Load(r io.Reader) error
}

// stateful are the simulators that services in the database point into
// (VMs, game servers, bare-metal servers): their state is what must outlive a restart of
// `provisiond dev` for those services to stay meaningful.
func (f *Fleet) stateful() map[string]snapshotter {
	return map[string]snapshotter{"proxmox": f.Proxmox, "pterodactyl": f.Pterodactyl, "tenantos": f.Tenantos}
}

// SaveState writes the state of the Proxmox, Pterodactyl and Tenantos simulators to
// dir, one JSON file each; a file is replaced whole (written aside, then
// renamed), so a crash mid-write leaves the previous one.
func (f *Fleet) SaveState(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("simulator state: %w", err)
	}
	for name, s := range f.stateful() {
		path := filepath.Join(dir, name+".json")
		tmp, err := os.CreateTemp(dir, name+".*.tmp")
		if err != nil {
			return fmt.Errorf("simulator state %s: %w", name, err)
		}
		err = s.Save(tmp)
		if cerr := tmp.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = os.Rename(tmp.Name(), path)
		}
		if err != nil {
			os.Remove(tmp.Name())
			return fmt.Errorf("save %s simulator state: %w", name, err)
		}
	}
	return nil
}

// LoadState loads what SaveState wrote to dir and reports whether it found
// any; a simulator without a file keeps its demo data.
func (f *Fleet) LoadState(dir string) (bool, error) {
	found := false
	for name, s := range f.stateful() {
		file, err := os.Open(filepath.Join(dir, name+".json"))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return found, fmt.Errorf("load %s simulator state: %w", name, err)
		}
		err = s.Load(file)
		file.Close()
		if err != nil {
			return found, fmt.Errorf("load %s simulator state: %w", name, err)
		}
		found = true
	}
	return found, nil
}
