package sim

import (
	"errors"
	"net/http"
	"path"
	"time"

	"github.com/hostfleet/provisiond/adapters/simkit"
)

// ControlHandler serves the /_sim/ control endpoints over HTTP, without
// authentication: simkit's calls and faults, and
//
//	GET /_sim/snapshots   every snapshot, kopia's JSON fields
//	GET /_sim/users       the server users of every repository
//	GET /_sim/restores    the restores carried out
func (s *Server) ControlHandler() http.Handler {
	mux := http.NewServeMux()
	s.Control(mux)
	mux.HandleFunc("GET /_sim/snapshots", func(w http.ResponseWriter, r *http.Request) {
		simkit.WriteJSON(w, http.StatusOK, s.Snapshots())
	})
	mux.HandleFunc("GET /_sim/users", func(w http.ResponseWriter, r *http.Request) {
		simkit.WriteJSON(w, http.StatusOK, s.Users())
	})
	mux.HandleFunc("GET /_sim/restores", func(w http.ResponseWriter, r *http.Request) {
		simkit.WriteJSON(w, http.StatusOK, s.Restores())
	})
	return mux
}

// DemoFiles are the backup host's files in `provisiond dev`: two teams'
// data under /srv/teams, for Config.Files.
func DemoFiles() map[string]int64 {
	return map[string]int64{
		"/srv/teams/acme/www/index.html":       4_096,
		"/srv/teams/acme/www/assets/app.js":    182_734,
		"/srv/teams/acme/db/dump.sql":          52_428_800,
		"/srv/teams/globex/mail/inbox.mbox":    9_437_184,
		"/srv/teams/globex/minecraft/world/":   0,
		"/srv/teams/globex/minecraft/eula.txt": 9,
	}
}

// SeedDemo sets the host up as `provisiond dev` starts it: the repository
// at Config.ServerRepository with Config.Password, connected in login's
// default config file, the server users acme@panel and globex@panel
// (passwords "acme-secret" and "globex-secret") already loaded by the
// server, and two daily snapshots of each team directory that exists.
func (s *Server) SeedDemo(login string) error {
	if s.cfg.Password == "" {
		return errors.New("sim: SeedDemo needs Config.Password")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.cfg.ServerRepository
	if _, ok := s.repos[p]; ok {
		return errors.New("sim: a repository exists at " + p)
	}
	r := s.newRepository(p, s.cfg.Password)
	home := "/home/" + login
	if login == "root" {
		home = "/root"
	}
	s.conns[path.Join(home, ".config/kopia/repository.config")] = &connection{
		repo: p, password: s.cfg.Password, username: login, hostname: s.cfg.Hostname,
		description: "Repository in Filesystem: " + p,
	}
	r.users = map[string]string{"acme@panel": "acme-secret", "globex@panel": "globex-secret"}
	r.served = map[string]string{"acme@panel": "acme-secret", "globex@panel": "globex-secret"}
	now := time.Now().UTC()
	for _, team := range []string{"/srv/teams/acme", "/srv/teams/globex"} {
		tree, ok := s.capture(team)
		if !ok {
			continue
		}
		src := Source{Host: s.cfg.Hostname, UserName: login, Path: team}
		for days := 2; days >= 1; days-- {
			start := now.AddDate(0, 0, -days)
			root, st := summarize(team, tree, nil)
			sn := &snapshot{tree: tree, Snapshot: Snapshot{ID: s.randomHex(16), Source: src,
				StartTime: start, EndTime: start.Add(42 * time.Second), Stats: &st, RootEntry: root, Repository: p,
				Tags: map[string]string{"tag:team": path.Base(team)}}}
			r.snapshots[sn.ID] = sn
		}
	}
	return nil
}
