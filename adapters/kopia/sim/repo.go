package sim

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"path"
	"regexp"
	"slices"
	"strings"
	"time"
)

// repository is a kopia repository in filesystem storage.
type repository struct {
	path     string
	password string
	uniqueID string
	// users are the server users stored in the repository; served is the
	// copy the running `kopia server` loaded at its last refresh.
	users     map[string]string
	served    map[string]string
	snapshots map[string]*snapshot
	policies  map[string]retention
}

// connection is what a kopia config file holds: where the repository is,
// as whom, and the persisted password.
type connection struct {
	repo        string
	server      string // the API server's URL when connected through it
	password    string // "" when credentials were not persisted
	username    string
	hostname    string
	description string
	readOnly    bool
}

// User is a server user as stored in a repository.
type User struct {
	Repository string `json:"repository"`
	Username   string `json:"username"`
	Password   string `json:"password"`
	// Served tells whether the running kopia server has loaded the user
	// (with this password): after `kopia server refresh`.
	Served bool `json:"served"`
}

// Users returns the server users of every repository, by repository and
// username.
func (s *Server) Users() []User {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []User
	for _, p := range slices.Sorted(maps.Keys(s.repos)) {
		r := s.repos[p]
		for _, name := range slices.Sorted(maps.Keys(r.users)) {
			pw := r.users[name]
			served, ok := r.served[name]
			out = append(out, User{Repository: p, Username: name, Password: pw, Served: ok && served == pw})
		}
	}
	return out
}

// newRepository initializes a repository with kopia's default global
// policy; the lock must be held.
func (s *Server) newRepository(p, password string) *repository {
	r := &repository{
		path: p, password: password, uniqueID: s.randomHex(32),
		users: map[string]string{}, served: map[string]string{},
		snapshots: map[string]*snapshot{}, policies: map[string]retention{globalTarget: defaultRetention()},
	}
	s.repos[p] = r
	return r
}

// abs resolves p against the login's home, as filepath.Abs does in the
// remote shell's working directory.
func (e *execution) abs(p string) string {
	if path.IsAbs(p) {
		return path.Clean(p)
	}
	return path.Join(e.home(), p)
}

// configFile is where --config-file points: a bare name lives in the
// login's ~/.config/kopia.
func (e *execution) configFile() string {
	p := e.inv.str("config-file")
	if path.Base(p) == p {
		return path.Join(e.home(), ".config/kopia", p)
	}
	return e.abs(p)
}

// errNoTerminal is what reading a password from an exec channel's stdin
// gives: it is not a terminal.
var errNoTerminal = errors.New("password prompt error: inappropriate ioctl for device")

// flagPassword is --password or KOPIA_PASSWORD, trimmed; without one kopia
// prompts on stdout and fails to read from a non-terminal.
func (e *execution) flagPassword(prompt string) (string, error) {
	if p := strings.TrimSpace(e.inv.str("password")); p != "" {
		return p, nil
	}
	e.stdout.WriteString(prompt)
	return "", errNoTerminal
}

// open opens the repository of the config file, as every repository
// command does first; the lock must be held.
func (e *execution) open() (*connection, *repository, error) {
	c, ok := e.s.conns[e.configFile()]
	if !ok {
		return nil, nil, errors.New("open repository: repository is not connected. See https://kopia.io/docs/repositories/")
	}
	pass := strings.TrimSpace(e.inv.str("password"))
	if pass == "" {
		pass = c.password
	}
	if pass == "" {
		if _, err := e.flagPassword("Enter password to open repository: "); err != nil {
			return nil, nil, fmt.Errorf("open repository: get password: %w", err)
		}
	}
	r := e.s.repos[c.repo]
	valid := r != nil && pass == r.password
	if c.server != "" {
		pw, ok := r.served[c.username+"@"+c.hostname]
		valid = r != nil && ok && pw == pass
	}
	if !valid {
		if c.server != "" {
			return nil, nil, errors.New("open repository: unable to open repository: unable to establish session: 401 Unauthorized")
		}
		return nil, nil, errors.New("open repository: unable to open repository: unable to create format manager: invalid repository password")
	}
	return c, r, nil
}

// clientOptions are the username and hostname a connection records.
func (e *execution) clientOptions(description string) *connection {
	c := &connection{
		username: e.inv.str("override-username"), hostname: e.inv.str("override-hostname"),
		description: e.inv.str("description"), readOnly: e.inv.boolean("readonly"),
	}
	if c.username == "" {
		c.username = e.user
	}
	if c.hostname == "" {
		c.hostname = e.s.cfg.Hostname
	}
	if c.description == "" {
		c.description = description
	}
	return c
}

// connect writes the config file; the lock must be held.
func (e *execution) connect(c *connection, password string) {
	if e.inv.boolean("persist-credentials") {
		c.password = password
	}
	e.s.conns[e.configFile()] = c
}

func (e *execution) repositoryCreate() int {
	p := e.abs(e.inv.str("path"))
	e.s.mu.Lock()
	defer e.s.mu.Unlock()
	if _, ok := e.s.repos[p]; ok {
		return e.fail(errors.New("unable to get repository storage: found existing data in storage location"))
	}
	pass, err := e.flagPassword("Enter password to create new repository: ")
	if err != nil {
		return e.fail(fmt.Errorf("getting password: password entry: %w", err))
	}
	e.info("Initializing repository with:")
	e.info("  block hash:          BLAKE2B-256-128")
	e.info("  encryption:          AES256-GCM-HMAC-SHA256")
	e.info("  key derivation:      scrypt-65536-8-1")
	e.info("  splitter:            DYNAMIC-4M-BUZHASH")
	e.s.newRepository(p, pass)
	if e.inv.boolean("create-only") {
		return 0
	}
	c := e.clientOptions("Repository in Filesystem: " + p)
	c.repo = p
	e.connect(c, pass)
	e.info("Connected to repository.")
	d := defaultRetention()
	fmt.Fprintf(&e.stdout, "Policy for (global):\n\nRetention:\n")
	for _, row := range d.rows() {
		fmt.Fprintf(&e.stdout, "  %-28s %-10d (defined for this target)\n", row.label+":", *row.value)
	}
	e.stdout.WriteString("\nNOTE: To validate that your provider is compatible with Kopia, please run:\n\n$ kopia repository validate-provider\n\n")
	e.stderr.WriteString("\nTo find more information about default policy run 'kopia policy get'.\nTo change the policy use 'kopia policy set' command.\n")
	return 0
}

func (e *execution) connectFilesystem() int {
	p := e.abs(e.inv.str("path"))
	e.s.mu.Lock()
	defer e.s.mu.Unlock()
	r, ok := e.s.repos[p]
	if !ok {
		if e.s.dirExists(p) {
			return e.fail(errors.New("error connecting to repository: repository not initialized in the provided storage"))
		}
		return e.fail(fmt.Errorf("can't connect to storage: cannot access storage path: stat %s: no such file or directory", p))
	}
	pass, err := e.flagPassword("Enter password to open repository: ")
	if err != nil {
		return e.fail(fmt.Errorf("getting password: %w", err))
	}
	if pass != r.password {
		return e.fail(errors.New("error connecting to repository: unable to create format manager: invalid repository password"))
	}
	c := e.clientOptions("Repository in Filesystem: " + p)
	c.repo = p
	e.connect(c, pass)
	e.info("Connected to repository.")
	return 0
}

// apiServer checks an address of the host's kopia server the way a client
// reaching it would find it, naming the endpoint in errors; the lock must
// be held.
func (e *execution) apiServer(address, fingerprint, endpoint string) (*repository, error) {
	address = strings.TrimSuffix(address, "/")
	r, running := e.s.repos[e.s.cfg.ServerRepository]
	if address != e.s.cfg.ServerURL || !running {
		host := address
		if u, err := url.Parse(address); err == nil && u.Host != "" {
			host = u.Host
		}
		//lint:ignore ST1005 kopia's own wording, which the adapter reads
		return nil, fmt.Errorf("Get %q: dial tcp %s: connect: connection refused", address+endpoint, host)
	}
	if strings.HasPrefix(address, "https:") && !strings.EqualFold(fingerprint, e.s.cfg.ServerCertFingerprint) {
		//lint:ignore ST1005 kopia's own wording, which the adapter reads
		return nil, fmt.Errorf("Get %q: tls: failed to verify certificate: server certificate fingerprint mismatch", address+endpoint)
	}
	return r, nil
}

func (e *execution) connectServer() int {
	c := e.clientOptions("Repository Server")
	address := strings.TrimSuffix(e.inv.str("url"), "/")
	e.info("Connecting to server '%v' as '%v@%v'...", address, c.username, c.hostname)
	e.s.mu.Lock()
	defer e.s.mu.Unlock()
	pass, err := e.flagPassword("Enter password to open repository: ")
	if err != nil {
		return e.fail(fmt.Errorf("getting password: %w", err))
	}
	r, err := e.apiServer(address, e.inv.str("server-cert-fingerprint"), "/api/v1/repo/parameters")
	if err != nil {
		return e.fail(fmt.Errorf("error connecting to API server: %w", err))
	}
	if pw, ok := r.served[c.username+"@"+c.hostname]; !ok || pw != pass {
		return e.fail(errors.New("error connecting to API server: unable to establish session: 401 Unauthorized"))
	}
	c.repo, c.server = r.path, address
	e.connect(c, pass)
	e.info("Connected to repository API Server.")
	return 0
}

func (e *execution) repositoryDisconnect() int {
	e.s.mu.Lock()
	defer e.s.mu.Unlock()
	cfg := e.configFile()
	if _, ok := e.s.conns[cfg]; !ok {
		return e.fail(fmt.Errorf("error disconnecting: error loading config file: open %s: no such file or directory", cfg))
	}
	delete(e.s.conns, cfg)
	return 0
}

// repositoryStatusJSON is kopia's RepositoryStatus.
type repositoryStatusJSON struct {
	ConfigFile    string         `json:"configFile"`
	UniqueIDHex   string         `json:"uniqueIDHex"`
	ClientOptions map[string]any `json:"clientOptions"`
	Storage       map[string]any `json:"storage"`
	ContentFormat map[string]any `json:"contentFormat"`
	ObjectFormat  map[string]any `json:"objectFormat"`
	BlobRetention map[string]any `json:"blobRetention"`
}

func (e *execution) repositoryStatus() int {
	e.s.mu.Lock()
	defer e.s.mu.Unlock()
	c, r, err := e.open()
	if err != nil {
		return e.fail(err)
	}
	opts := map[string]any{"hostname": c.hostname, "username": c.username, "description": c.description,
		"enableActions": false, "formatBlobCacheDuration": 15 * time.Minute}
	if c.readOnly {
		opts["readonly"] = true
	}
	if e.inv.boolean("json") {
		st := repositoryStatusJSON{ConfigFile: e.configFile(), ClientOptions: opts,
			Storage: map[string]any{"type": "", "config": nil}, BlobRetention: map[string]any{}}
		if c.server == "" {
			st.UniqueIDHex = r.uniqueID
			st.Storage = map[string]any{"type": "filesystem", "config": map[string]any{"path": r.path}}
			st.ContentFormat = map[string]any{"hash": "BLAKE2B-256-128", "encryption": "AES256-GCM-HMAC-SHA256",
				"ecc": "", "eccOverheadPercent": 0, "version": 3, "maxPackSize": 21 << 20}
			st.ObjectFormat = map[string]any{"splitter": "DYNAMIC-4M-BUZHASH"}
		}
		b, _ := json.Marshal(st)
		e.stdout.Write(append(b, '\n'))
		return 0
	}
	fmt.Fprintf(&e.stdout, "Config file:         %v\n\n", e.configFile())
	fmt.Fprintf(&e.stdout, "Description:         %v\n", c.description)
	fmt.Fprintf(&e.stdout, "Hostname:            %v\n", c.hostname)
	fmt.Fprintf(&e.stdout, "Username:            %v\n", c.username)
	fmt.Fprintf(&e.stdout, "Read-only:           %v\n", c.readOnly)
	fmt.Fprintf(&e.stdout, "Format blob cache:   15m0s\n")
	if c.server != "" {
		return 0
	}
	fmt.Fprintf(&e.stdout, "\nStorage type:        filesystem\nStorage capacity:    unbounded\n")
	fmt.Fprintf(&e.stdout, "Storage config:      {\n                       \"path\": %q\n                     }\n\n", r.path)
	fmt.Fprintf(&e.stdout, "Unique ID:           %s\n", r.uniqueID)
	fmt.Fprintf(&e.stdout, "Hash:                BLAKE2B-256-128\nEncryption:          AES256-GCM-HMAC-SHA256\nSplitter:            DYNAMIC-4M-BUZHASH\n")
	fmt.Fprintf(&e.stdout, "Format version:      3\nContent compression: true\nPassword changes:    true\nMax pack length:     21 MB\nIndex Format:        v2\n\nEpoch Manager:       enabled\n")
	return 0
}

// validUsername is kopia's rule for server users: lowercase user@hostname.
var validUsername = regexp.MustCompile(`^[a-z0-9\-_.]+@[a-z0-9\-_.]+$`)

func (e *execution) userAdd() int { return e.userAddSet(true) }
func (e *execution) userSet() int { return e.userAddSet(false) }

// userAddSet is `server users add` (isNew) and `server users set`.
func (e *execution) userAddSet(isNew bool) int {
	e.s.mu.Lock()
	defer e.s.mu.Unlock()
	_, r, err := e.open()
	if err != nil {
		return e.fail(err)
	}
	name := e.inv.arg("username")
	pw, exists := r.users[name]
	switch {
	case isNew && exists:
		return e.fail(fmt.Errorf("user %q already exists", name))
	case !isNew && !exists:
		return e.fail(fmt.Errorf("error getting user profile: %s: user not found", name))
	}
	changed := false
	if p := e.inv.str("user-password"); p != "" {
		pw, changed = p, true
	}
	if !exists && !changed || e.inv.boolean("ask-password") {
		e.stdout.WriteString("Enter new password for user " + name + ": ")
		return e.fail(fmt.Errorf("error asking for password: %w", errNoTerminal))
	}
	if !changed && !isNew {
		return e.fail(errors.New("no change"))
	}
	if !validUsername.MatchString(name) {
		return e.fail(errors.New("error setting user profile: username must be specified as lowercase 'user@hostname'"))
	}
	r.users[name] = pw
	e.info("\nUpdated user credentials will take effect in 5-10 minutes or when the server is restarted.\nTo refresh credentials in a running server use 'kopia server refresh' command.\n")
	return 0
}

func (e *execution) userDelete() int {
	e.s.mu.Lock()
	defer e.s.mu.Unlock()
	_, r, err := e.open()
	if err != nil {
		return e.fail(err)
	}
	// kopia deletes whatever profiles match, none included.
	name := e.inv.arg("username")
	delete(r.users, name)
	e.info("User %q deleted.", name)
	return 0
}

// profileJSON is kopia's user.Profile.
type profileJSON struct {
	Username            string `json:"username"`
	PasswordHashVersion int    `json:"passwordHashVersion,omitempty"`
	PasswordHash        []byte `json:"passwordHash"`
}

// profile hashes the password as a salt followed by a key, the shape of
// kopia's scrypt profiles.
func profile(name, pw string) profileJSON {
	salt := sha256.Sum256([]byte("salt:" + name))
	key := sha256.Sum256(append(salt[:], pw...))
	return profileJSON{Username: name, PasswordHashVersion: 1, PasswordHash: append(salt[:], key[:]...)}
}

func (e *execution) userList() int {
	e.s.mu.Lock()
	defer e.s.mu.Unlock()
	_, r, err := e.open()
	if err != nil {
		return e.fail(err)
	}
	l := e.jsonList()
	for _, name := range slices.Sorted(maps.Keys(r.users)) {
		if l != nil {
			l.emit(profile(name, r.users[name]))
		} else {
			e.stdout.WriteString(name + "\n")
		}
	}
	l.end()
	return 0
}

func (e *execution) userInfo() int {
	e.s.mu.Lock()
	defer e.s.mu.Unlock()
	_, r, err := e.open()
	if err != nil {
		return e.fail(err)
	}
	name := e.inv.arg("username")
	pw, ok := r.users[name]
	if !ok {
		return e.fail(fmt.Errorf("error getting user profile: %s: user not found", name))
	}
	b, _ := json.MarshalIndent(profile(name, pw), "", "  ")
	e.stdout.Write(b)
	return 0
}

func (e *execution) serverRefresh() int {
	e.s.mu.Lock()
	defer e.s.mu.Unlock()
	user := e.inv.str("server-control-username")
	if user == "" {
		user = e.inv.str("server-username")
	}
	if user == "" {
		user = "server-control"
	}
	pass := e.inv.str("server-control-password")
	if pass == "" {
		pass = e.inv.str("server-password")
	}
	address := e.inv.str("address")
	r, err := e.apiServer(address, e.inv.str("server-cert-fingerprint"), "/api/v1/control/refresh")
	if err != nil {
		return e.fail(err)
	}
	if user != e.s.cfg.ServerControlUser || pass != e.s.cfg.ServerControlPassword {
		return e.fail(errors.New("401 Unauthorized: access denied"))
	}
	r.served = maps.Clone(r.users)
	return 0
}

// jsonList writes a list as kopia's jsonList does ("[", items separated by
// ",\n ", "\n]"), or returns nil without --json.
func (e *execution) jsonList() *jsonList {
	if !e.inv.boolean("json") {
		return nil
	}
	e.stdout.WriteString("[")
	return &jsonList{e: e, sep: "\n "}
}

type jsonList struct {
	e   *execution
	sep string
}

func (l *jsonList) emit(v any) {
	b, _ := json.Marshal(v)
	l.e.stdout.WriteString(l.sep)
	l.e.stdout.Write(b)
	l.sep = ",\n "
}

func (l *jsonList) end() {
	if l != nil {
		l.e.stdout.WriteString("\n]")
	}
}
