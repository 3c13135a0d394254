// Package sim is a simulated Kopia backup host: an in-process SSH server
// (golang.org/x/crypto/ssh) whose exec channels run a simulator of the
// kopia command line, with kopia's own flag parsing (kingpin), JSON output,
// error texts on stderr and exit statuses, so that an adapter that runs
// `kopia ...` over SSH works against it unchanged.
//
// The host keeps real state in memory: a file system of sized files,
// repositories with their users, snapshots and retention policies, and the
// repository connection of each kopia config file. A snapshot takes
// Config.SnapshotDuration and keeps running when the SSH client goes away,
// as a kopia process without a terminal does.
//
// Faults and the call log are simkit's, adapted to commands: Op is the
// kopia subcommand ("snapshot.create"), Target the path, snapshot id or
// username it is about, Call.Method is "exec" and Call.Path the command line
// with secrets masked. Call.Status is 200 when kopia exits 0, 500 when it
// fails, 400 for a command line kopia rejects, 404 for a program that is
// not kopia, the fault's status for a scripted refusal and 0 when the
// client went away first. ControlHandler serves the /_sim/ endpoints.
package sim

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	mrand "math/rand/v2"
	"net"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/hostfleet/provisiond/adapters/simkit"
)

// Config configures a Server.
type Config struct {
	// HostKey is the SSH host key; a fresh ed25519 key when nil.
	HostKey ssh.Signer
	// AuthorizedKeys are the client keys allowed to log in, as any user.
	// Password authentication is never offered.
	AuthorizedKeys []ssh.PublicKey
	// AcceptEnv lists the environment variables an `env` request may set,
	// as sshd_config's AcceptEnv does ("LC_*" patterns allowed); default
	// LANG, LC_* and KOPIA_*. sshd refuses the others.
	AcceptEnv []string
	// Hostname is the backup host's name, the default host of snapshot
	// sources; default "backup1".
	Hostname string
	// Password is the password of the repository SeedDemo creates.
	Password string
	// SnapshotDuration is how long `kopia snapshot create` takes per
	// source; default 100ms.
	SnapshotDuration time.Duration
	// Seed seeds random faults and the ids kopia draws at random.
	Seed uint64
	// Files is the host's file system: absolute path to size in bytes. A
	// path ending in "/" is an empty directory.
	Files map[string]int64

	// ServerURL is where the host's `kopia server` listens; default
	// https://127.0.0.1:51515. It serves the repository at
	// ServerRepository (default /srv/kopia/repo) once one exists there.
	ServerURL        string
	ServerRepository string
	// ServerCertFingerprint is the SHA-256 fingerprint of the server's TLS
	// certificate, as clients pass it to --server-cert-fingerprint.
	ServerCertFingerprint string
	// ServerControlUser and ServerControlPassword are what `kopia server
	// refresh` must present; the user defaults to "server-control".
	ServerControlUser     string
	ServerControlPassword string
}

// Server is a simulated backup host. Its methods are safe for concurrent
// use. Faults and the call log are the embedded Kit's.
type Server struct {
	*simkit.Kit
	cfg     Config
	sshConf *ssh.ServerConfig
	signer  ssh.Signer

	mu        sync.Mutex
	closed    bool
	listeners map[net.Listener]bool
	netConns  map[net.Conn]bool
	wg        sync.WaitGroup
	rng       *mrand.Rand
	files     map[string]fileInfo
	repos     map[string]*repository
	conns     map[string]*connection
	restores  []Restore
	timers    []*time.Timer
}

type fileInfo struct {
	size  int64
	mtime time.Time
}

// New returns a Server for cfg with the files of cfg.Files and no
// repository.
func New(cfg Config) *Server {
	if cfg.Hostname == "" {
		cfg.Hostname = "backup1"
	}
	if cfg.SnapshotDuration <= 0 {
		cfg.SnapshotDuration = 100 * time.Millisecond
	}
	if cfg.AcceptEnv == nil {
		cfg.AcceptEnv = []string{"LANG", "LC_*", "KOPIA_*"}
	}
	if cfg.ServerURL == "" {
		cfg.ServerURL = "https://127.0.0.1:51515"
	}
	if cfg.ServerRepository == "" {
		cfg.ServerRepository = "/srv/kopia/repo"
	}
	if cfg.ServerControlUser == "" {
		cfg.ServerControlUser = "server-control"
	}
	signer := cfg.HostKey
	if signer == nil {
		_, key, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			panic("sim: ed25519 key generation failed: " + err.Error())
		}
		if signer, err = ssh.NewSignerFromKey(key); err != nil {
			panic("sim: " + err.Error())
		}
	}
	s := &Server{
		Kit:       simkit.New(cfg.Seed),
		cfg:       cfg,
		signer:    signer,
		listeners: map[net.Listener]bool{},
		netConns:  map[net.Conn]bool{},
		rng:       mrand.New(mrand.NewPCG(cfg.Seed, cfg.Seed^0x6b6f706961)),
		files:     map[string]fileInfo{},
		repos:     map[string]*repository{},
		conns:     map[string]*connection{},
	}
	if s.cfg.ServerCertFingerprint == "" {
		s.cfg.ServerCertFingerprint = s.randomHex(32)
	}
	now := time.Now().UTC()
	for p, size := range cfg.Files {
		s.files[p] = fileInfo{size: size, mtime: now}
	}
	s.sshConf = &ssh.ServerConfig{
		PublicKeyCallback: s.checkClientKey,
		ServerVersion:     "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3",
	}
	s.sshConf.AddHostKey(signer)
	return s
}

// Close stops listening, drops every connection, releases hung commands and
// stops snapshots still running. Serve returns nil afterwards.
func (s *Server) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	s.Kit.Close()
	for ln := range s.listeners {
		ln.Close()
	}
	for c := range s.netConns {
		c.Close()
	}
	for _, t := range s.timers {
		t.Stop()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// HostKey is the server's public host key, for ssh.FixedHostKey.
func (s *Server) HostKey() ssh.PublicKey { return s.signer.PublicKey() }

// KnownHostsLine is the known_hosts line that makes a client trust this
// server at address ("host:port").
func (s *Server) KnownHostsLine(address string) string {
	return knownhosts.Line([]string{knownhosts.Normalize(address)}, s.HostKey())
}

// ServerFingerprint is the certificate fingerprint `kopia repository
// connect server --server-cert-fingerprint` must be given.
func (s *Server) ServerFingerprint() string { return s.cfg.ServerCertFingerprint }

// randomHex draws n random bytes from the seeded source as hex, as kopia
// draws manifest ids; the lock must be held or the server not yet shared.
func (s *Server) randomHex(n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(s.rng.Uint32())
	}
	return hex.EncodeToString(b)
}

// WriteFile creates or replaces a file on the host, modified now.
func (s *Server) WriteFile(path string, size int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.files[path] = fileInfo{size: size, mtime: time.Now().UTC()}
}

// File returns the size of a file on the host.
func (s *Server) File(path string) (int64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f, ok := s.files[path]
	return f.size, ok
}

// Files returns every file on the host with its size; empty directories end
// in "/".
func (s *Server) Files() map[string]int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int64, len(s.files))
	for p, f := range s.files {
		out[p] = f.size
	}
	return out
}
