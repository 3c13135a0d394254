package sim_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/hostfleet/provisiond/adapters/kopia/sim"
	"github.com/hostfleet/provisiond/adapters/simkit"
)

const (
	snapTime = 50 * time.Millisecond
	repoPass = "repo-secret"
	login    = "backup"
	ctlPass  = "ctl-secret"
)

// host is a running simulator with a client key it accepts.
type host struct {
	s      *sim.Server
	addr   string
	signer ssh.Signer
}

func newKey(t *testing.T) ssh.Signer {
	t.Helper()
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return signer
}

// newHost serves a simulator with a few files on a local port.
func newHost(t *testing.T) *host {
	t.Helper()
	signer := newKey(t)
	s := sim.New(sim.Config{
		AuthorizedKeys:        []ssh.PublicKey{signer.PublicKey()},
		SnapshotDuration:      snapTime,
		Seed:                  1,
		ServerControlPassword: ctlPass,
		Files: map[string]int64{
			"/srv/data/a.txt":     100,
			"/srv/data/sub/b.bin": 2000,
			"/srv/data/empty/":    0,
			"/srv/other/c.txt":    7,
		},
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(ln)
	t.Cleanup(s.Close)
	return &host{s: s, addr: ln.Addr().String(), signer: signer}
}

func (h *host) dial(t *testing.T) *ssh.Client {
	t.Helper()
	c, err := ssh.Dial("tcp", h.addr, &ssh.ClientConfig{
		User:            login,
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(h.signer)},
		HostKeyCallback: ssh.FixedHostKey(h.s.HostKey()),
		Timeout:         2 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// result is how a command ended.
type result struct {
	stdout, stderr string
	code           int
	err            error // a failure other than a non-zero exit status
}

// run runs one command in a new session, with env set by env requests.
func run(t *testing.T, c *ssh.Client, cmd string, env ...string) result {
	t.Helper()
	sess, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	for i := 0; i+1 < len(env); i += 2 {
		if err := sess.Setenv(env[i], env[i+1]); err != nil {
			t.Fatalf("setenv %s: %v", env[i], err)
		}
	}
	var out, errOut bytes.Buffer
	sess.Stdout, sess.Stderr = &out, &errOut
	err = sess.Run(cmd)
	r := result{stdout: out.String(), stderr: errOut.String()}
	var exit *ssh.ExitError
	switch {
	case errors.As(err, &exit):
		r.code = exit.ExitStatus()
	case err != nil:
		r.err = err
	}
	return r
}

// ok runs a command that must succeed.
func ok(t *testing.T, c *ssh.Client, cmd string, env ...string) result {
	t.Helper()
	r := run(t, c, cmd, env...)
	if r.code != 0 || r.err != nil {
		t.Fatalf("%s: exit %d, %v, stderr %q", cmd, r.code, r.err, r.stderr)
	}
	return r
}

// connected returns a client whose login is connected to a new repository
// at /srv/repo.
func connected(t *testing.T) (*host, *ssh.Client) {
	t.Helper()
	h := newHost(t)
	c := h.dial(t)
	ok(t, c, "kopia repository create filesystem --path=/srv/repo --password="+repoPass)
	return h, c
}

// snapshotJSON mirrors the fields of kopia's `snapshot list --json`.
type snapshotJSON struct {
	ID     string `json:"id"`
	Source struct {
		Host, UserName, Path string
	} `json:"source"`
	Description string            `json:"description"`
	StartTime   string            `json:"startTime"`
	EndTime     string            `json:"endTime"`
	Stats       map[string]int64  `json:"stats"`
	RootEntry   map[string]any    `json:"rootEntry"`
	Tags        map[string]string `json:"tags"`
	Retention   []string          `json:"retentionReason"`
}

func list(t *testing.T, c *ssh.Client, args string) []snapshotJSON {
	t.Helper()
	r := ok(t, c, "kopia snapshot list --json "+args)
	var out []snapshotJSON
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
		t.Fatalf("snapshot list output %q: %v", r.stdout, err)
	}
	return out
}

func TestClientRefusesAWrongHostKey(t *testing.T) {
	h := newHost(t)
	_, err := ssh.Dial("tcp", h.addr, &ssh.ClientConfig{
		User: login, Auth: []ssh.AuthMethod{ssh.PublicKeys(h.signer)},
		HostKeyCallback: ssh.FixedHostKey(newKey(t).PublicKey()), Timeout: 2 * time.Second,
	})
	if err == nil || !strings.Contains(err.Error(), "host key mismatch") {
		t.Fatalf("err = %v, want a host key mismatch", err)
	}
}

func TestServerRefusesUnknownKeysAndPasswords(t *testing.T) {
	h := newHost(t)
	tests := []struct {
		name string
		auth ssh.AuthMethod
	}{
		{"unknown key", ssh.PublicKeys(newKey(t))},
		{"password", ssh.Password("hunter2")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ssh.Dial("tcp", h.addr, &ssh.ClientConfig{
				User: login, Auth: []ssh.AuthMethod{tt.auth},
				HostKeyCallback: ssh.FixedHostKey(h.s.HostKey()), Timeout: 2 * time.Second,
			})
			if err == nil || !strings.Contains(err.Error(), "unable to authenticate") {
				t.Fatalf("err = %v, want authentication refused", err)
			}
		})
	}
}

func TestKnownHostsLineNamesTheHostKey(t *testing.T) {
	h := newHost(t)
	line := h.s.KnownHostsLine(h.addr)
	want := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(h.s.HostKey())))
	if !strings.HasSuffix(line, want) || !strings.HasPrefix(line, "[127.0.0.1]:") {
		t.Errorf("known_hosts line %q, want [host]:port and %q", line, want)
	}
}

func TestShellsAndTerminalsAreRefused(t *testing.T) {
	h := newHost(t)
	c := h.dial(t)
	sess, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	if err := sess.RequestPty("xterm", 40, 80, ssh.TerminalModes{}); err == nil {
		t.Error("pty-req was granted")
	}
	if err := sess.Shell(); err == nil {
		t.Error("shell was granted")
	}
}

func TestEnvRequestsFollowAcceptEnv(t *testing.T) {
	h := newHost(t)
	c := h.dial(t)
	sess, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	if err := sess.Setenv("KOPIA_PASSWORD", repoPass); err != nil {
		t.Errorf("KOPIA_PASSWORD refused: %v", err)
	}
	if err := sess.Setenv("PATH", "/tmp"); err == nil {
		t.Error("PATH was accepted")
	}
}

func TestPasswordComesFromFlagOrEnvironment(t *testing.T) {
	tests := []struct {
		name string
		cmd  string
		env  []string
	}{
		{"flag with =", "kopia repository connect filesystem --path=/srv/repo --password=" + repoPass, nil},
		{"flag with space", "kopia repository connect filesystem --path /srv/repo --password " + repoPass, nil},
		{"short flag", "kopia repository connect filesystem --path=/srv/repo -p" + repoPass, nil},
		{"env request", "kopia repository connect filesystem --path=/srv/repo", []string{"KOPIA_PASSWORD", repoPass}},
		{"shell assignment", "KOPIA_PASSWORD='" + repoPass + "' kopia repository connect filesystem --path=/srv/repo", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, c := connected(t)
			ok(t, c, "kopia repository disconnect")
			ok(t, c, tt.cmd, tt.env...)
			if r := ok(t, c, "kopia repository status --json"); !strings.Contains(r.stdout, `"username":"backup"`) {
				t.Errorf("status %s, want the login as username", r.stdout)
			}
		})
	}
}

func TestRepositoryErrorsUseKopiasText(t *testing.T) {
	tests := []struct {
		name, cmd, stderr string
		fresh             bool // on a host without a repository
	}{
		{"second create", "kopia repository create filesystem --path=/srv/repo --password=x",
			"\x1b[31mERROR\x1b[0m unable to get repository storage: found existing data in storage location\n", false},
		{"not connected", "kopia snapshot list --json",
			"ERROR open repository: repository is not connected. See https://kopia.io/docs/repositories/\n", true},
		{"wrong password on connect", "kopia repository connect filesystem --path=/srv/repo --password=nope",
			"ERROR error connecting to repository: unable to create format manager: invalid repository password\n", false},
		{"wrong password on open", "kopia snapshot list --json --password=nope",
			"ERROR open repository: unable to open repository: unable to create format manager: invalid repository password\n", false},
		{"no repository there", "kopia repository connect filesystem --path=/srv/none --password=x",
			"ERROR can't connect to storage: cannot access storage path: stat /srv/none: no such file or directory\n", false},
		{"disconnect when not connected", "kopia repository disconnect",
			"ERROR error disconnecting: error loading config file: open /home/backup/.config/kopia/repository.config: no such file or directory\n", true},
		{"no password and no terminal", "kopia repository create filesystem --path=/srv/new",
			"ERROR getting password: password entry: password prompt error: inappropriate ioctl for device\n", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c *ssh.Client
			if tt.fresh {
				c = newHost(t).dial(t)
			} else {
				_, c = connected(t)
			}
			cmd := tt.cmd
			if !strings.Contains(tt.stderr, "\x1b") {
				cmd += " --disable-color"
			}
			r := run(t, c, cmd)
			if r.code != 1 || r.stderr != tt.stderr {
				t.Errorf("exit %d, stderr %q; want 1, %q", r.code, r.stderr, tt.stderr)
			}
		})
	}
}

func TestCommandLineErrorsUseKingpinsText(t *testing.T) {
	tests := []struct{ cmd, stderr string }{
		{"kopia snapshot frobnicate", `kopia: error: expected command but got "frobnicate", try --help`},
		{"kopia snapshot list --bogus", "kopia: error: unknown long flag '--bogus', try --help"},
		{"kopia snapshot list -z", "kopia: error: unknown short flag '-z', try --help"},
		{"kopia repository create filesystem", "kopia: error: required flag --path not provided, try --help"},
		{"kopia repository connect", "kopia: error: must select a subcommand of 'repository connect', try --help"},
		{"kopia server users add", "kopia: error: required argument 'username' not provided, try --help"},
		{"kopia snapshot list /a /b", "kopia: error: unexpected /b, try --help"},
		{"kopia snapshot list --password", "kopia: error: expected argument for flag '--password', try --help"},
		{"kopia snapshot create /x --description a --description b", "kopia: error: flag 'description' cannot be repeated, try --help"},
		{"kopia --json snapshot list", "kopia: error: unknown long flag '--json', try --help"},
	}
	h := newHost(t)
	c := h.dial(t)
	for _, tt := range tests {
		t.Run(tt.cmd, func(t *testing.T) {
			r := run(t, c, tt.cmd)
			if r.code != 1 || r.stderr != tt.stderr+"\n" {
				t.Errorf("exit %d, stderr %q; want 1, %q", r.code, r.stderr, tt.stderr)
			}
		})
	}
}

func TestOtherProgramsAreNotFound(t *testing.T) {
	c := newHost(t).dial(t)
	r := run(t, c, "ls /srv")
	if r.code != 127 || r.stderr != "bash: line 1: ls: command not found\n" {
		t.Errorf("exit %d, stderr %q", r.code, r.stderr)
	}
}

func TestSnapshotTakesTimeAndIsListedWithKopiasFields(t *testing.T) {
	_, c := connected(t)
	begin := time.Now()
	r := ok(t, c, "kopia snapshot create /srv/data --json --description nightly --tags team:acme")
	if took := time.Since(begin); took < snapTime {
		t.Errorf("snapshot took %v, want at least %v", took, snapTime)
	}
	var created map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &created); err != nil {
		t.Fatalf("create output %q: %v", r.stdout, err)
	}
	if _, hasStats := created["stats"]; hasStats {
		t.Error("create --json has stats; kopia drops them without --json-verbose")
	}
	snaps := list(t, c, "")
	if len(snaps) != 1 {
		t.Fatalf("listed %d snapshots, want 1", len(snaps))
	}
	s := snaps[0]
	if s.ID != created["id"] || s.Source.Path != "/srv/data" || s.Source.UserName != login || s.Source.Host != "backup1" || s.Description != "nightly" {
		t.Errorf("snapshot %+v", s)
	}
	start, err1 := time.Parse(time.RFC3339Nano, s.StartTime)
	end, err2 := time.Parse(time.RFC3339Nano, s.EndTime)
	if err1 != nil || err2 != nil || !strings.HasSuffix(s.StartTime, "Z") || end.Sub(start) < snapTime {
		t.Errorf("times %s .. %s, want UTC RFC 3339 at least %v apart", s.StartTime, s.EndTime, snapTime)
	}
	wantStats := map[string]int64{"totalSize": 2100, "excludedTotalSize": 0, "fileCount": 2, "cachedFiles": 0, "nonCachedFiles": 2,
		"dirCount": 3, "excludedFileCount": 0, "excludedDirCount": 0, "ignoredErrorCount": 0, "errorCount": 0}
	for k, v := range wantStats {
		if got, ok := s.Stats[k]; !ok || got != v {
			t.Errorf("stats.%s = %d (present %v), want %d", k, got, ok, v)
		}
	}
	summ, _ := s.RootEntry["summ"].(map[string]any)
	if s.RootEntry["type"] != "d" || s.RootEntry["mode"] != "0755" || !strings.HasPrefix(s.RootEntry["obj"].(string), "k") ||
		summ["size"] != 2100.0 || summ["files"] != 2.0 || summ["dirs"] != 3.0 || summ["numFailed"] != 0.0 {
		t.Errorf("rootEntry %v", s.RootEntry)
	}
	if s.Tags["tag:team"] != "acme" {
		t.Errorf("tags %v, want tag:team", s.Tags)
	}
	if !slices.Contains(s.Retention, "latest-1") || !slices.Contains(s.Retention, "daily-1") {
		t.Errorf("retentionReason %v", s.Retention)
	}
}

func TestSecondSnapshotReadsOnlyChangedFiles(t *testing.T) {
	h, c := connected(t)
	ok(t, c, "kopia snapshot create /srv/data")
	h.s.WriteFile("/srv/data/a.txt", 150)
	ok(t, c, "kopia snapshot create /srv/data")
	snaps := list(t, c, "/srv/data")
	if len(snaps) != 2 {
		t.Fatalf("%d snapshots", len(snaps))
	}
	if st := snaps[1].Stats; st["cachedFiles"] != 1 || st["nonCachedFiles"] != 1 || st["totalSize"] != 2150 {
		t.Errorf("second snapshot stats %v, want one cached file", st)
	}
	if snaps[0].RootEntry["obj"] == snaps[1].RootEntry["obj"] {
		t.Error("changed tree kept its root object id")
	}
}

func TestSnapshotListFilters(t *testing.T) {
	_, c := connected(t)
	ok(t, c, "kopia snapshot create /srv/data --tags team:acme")
	ok(t, c, "kopia snapshot create /srv/data/sub")
	ok(t, c, "kopia snapshot create /srv/other --tags team:globex")
	tests := []struct {
		args string
		want []string
	}{
		{"", []string{"/srv/data", "/srv/data/sub", "/srv/other"}},
		{"/srv/data/sub", []string{"/srv/data", "/srv/data/sub"}}, // parents too, as kopia does
		{"--tags team:globex", []string{"/srv/other"}},
		{"/srv/none", nil},
	}
	for _, tt := range tests {
		t.Run(tt.args, func(t *testing.T) {
			var got []string
			for _, s := range list(t, c, tt.args) {
				got = append(got, s.Source.Path)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("paths %v, want %v", got, tt.want)
			}
		})
	}
}

func TestEmptyListIsKopiasEmptyArray(t *testing.T) {
	_, c := connected(t)
	if r := ok(t, c, "kopia snapshot list --json"); r.stdout != "[\n]" {
		t.Errorf("stdout %q", r.stdout)
	}
}

func TestSnapshotOfAMissingPathFails(t *testing.T) {
	_, c := connected(t)
	r := run(t, c, "kopia snapshot create /srv/nope --disable-color")
	want := "Snapshotting backup@backup1:/srv/nope ...\nERROR unable to get local filesystem entry: resolveSymlink: stat: lstat /srv/nope: no such file or directory\n"
	if r.code != 1 || r.stderr != want {
		t.Errorf("exit %d, stderr %q", r.code, r.stderr)
	}
}

func TestDeleteWithoutConfirmationKeepsTheSnapshot(t *testing.T) {
	_, c := connected(t)
	ok(t, c, "kopia snapshot create /srv/data")
	id := list(t, c, "")[0].ID
	r := ok(t, c, "kopia snapshot delete "+id)
	if !strings.Contains(r.stderr, "Would delete snapshot "+id+" of backup@backup1:/srv/data at ") || !strings.Contains(r.stderr, "(pass --delete to confirm)") {
		t.Errorf("stderr %q", r.stderr)
	}
	if n := len(list(t, c, "")); n != 1 {
		t.Errorf("%d snapshots left, want 1", n)
	}
}

func TestDeletedSnapshotIsGone(t *testing.T) {
	h, c := connected(t)
	ok(t, c, "kopia snapshot create /srv/data")
	id := list(t, c, "")[0].ID
	ok(t, c, "kopia snapshot delete "+id+" --delete")
	if n := len(list(t, c, "")); n != 0 || len(h.s.Snapshots()) != 0 {
		t.Errorf("%d snapshots listed after delete", n)
	}
	r := run(t, c, "kopia snapshot delete "+id+" --delete --disable-color")
	want := "ERROR error deleting snapshots by root ID " + id + ": no snapshots matched " + id + "\n"
	if r.code != 1 || r.stderr != want {
		t.Errorf("second delete: exit %d, stderr %q", r.code, r.stderr)
	}
}

func TestRestoreWritesTheSnapshotTree(t *testing.T) {
	h, c := connected(t)
	ok(t, c, "kopia snapshot create /srv/data")
	id := list(t, c, "")[0].ID
	h.s.WriteFile("/srv/data/a.txt", 1) // changed after the snapshot
	tests := []struct {
		name, source, target string
		want                 map[string]int64
	}{
		{"by id", id, "/restore/one", map[string]int64{"/restore/one/a.txt": 100, "/restore/one/sub/b.bin": 2000, "/restore/one/empty/": 0}},
		{"by id and subdirectory", id + "/sub", "/restore/two", map[string]int64{"/restore/two/b.bin": 2000}},
		{"by path", "/srv/data/sub", "/restore/three", map[string]int64{"/restore/three/b.bin": 2000}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := ok(t, c, "kopia snapshot restore "+tt.source+" "+tt.target)
			if !strings.Contains(r.stderr, "Restored ") {
				t.Errorf("stderr %q", r.stderr)
			}
			for p, size := range tt.want {
				if got, ok := h.s.File(p); !ok || got != size {
					t.Errorf("%s: size %d (exists %v), want %d", p, got, ok, size)
				}
			}
			if rs := h.s.Restores(); len(rs) != i+1 || rs[i].SnapshotID != id || rs[i].Target != tt.target {
				t.Errorf("restores %+v", rs)
			}
		})
	}
}

func TestRestoreOfUnknownPathFails(t *testing.T) {
	_, c := connected(t)
	r := run(t, c, "kopia snapshot restore /srv/data /restore --disable-color")
	if r.code != 1 || !strings.HasSuffix(r.stderr, "ERROR no snapshots contain data for /srv/data\n") {
		t.Errorf("exit %d, stderr %q", r.code, r.stderr)
	}
}

func TestKeepLatestExpiresOlderSnapshotsOnCreate(t *testing.T) {
	_, c := connected(t)
	r := ok(t, c, "kopia policy set /srv/data --keep-latest 2 --keep-hourly 0 --keep-daily 0 --keep-weekly 0 --keep-monthly 0 --keep-annual 0")
	if !strings.Contains(r.stderr, ` - setting "number of latest backups to keep" to 2.`) {
		t.Errorf("policy set stderr %q", r.stderr)
	}
	for range 3 {
		ok(t, c, "kopia snapshot create /srv/data")
	}
	snaps := list(t, c, "")
	if len(snaps) != 2 {
		t.Fatalf("%d snapshots kept, want 2", len(snaps))
	}
	if !slices.Equal(snaps[0].Retention, []string{"latest-2"}) || !slices.Equal(snaps[1].Retention, []string{"latest-1"}) {
		t.Errorf("retention reasons %v, %v", snaps[0].Retention, snaps[1].Retention)
	}
}

func TestPolicySetRefusals(t *testing.T) {
	tests := []struct{ cmd, stderr string }{
		{"kopia policy set /srv/data", "ERROR no changes specified\n"},
		{"kopia policy set --keep-daily 3", "ERROR must pass either '--global' or a list of path targets\n"},
		{"kopia policy set --global --keep-daily x", `ERROR retention policy: can't parse the number of daily backups to keep "x": strconv.ParseInt: parsing "x": invalid syntax` + "\n"},
	}
	_, c := connected(t)
	for _, tt := range tests {
		t.Run(tt.cmd, func(t *testing.T) {
			r := run(t, c, tt.cmd+" --disable-color")
			if r.code != 1 || !strings.HasSuffix(r.stderr, tt.stderr) {
				t.Errorf("exit %d, stderr %q; want %q", r.code, r.stderr, tt.stderr)
			}
		})
	}
}

func TestServerUsersAreSeenAfterRefresh(t *testing.T) {
	h := newHost(t)
	c := h.dial(t)
	ok(t, c, "kopia repository create filesystem --path=/srv/kopia/repo --password="+repoPass)
	ok(t, c, "kopia snapshot create /srv/data")
	ok(t, c, "kopia server users add acme@panel --user-password=acme-pw")
	connect := "kopia repository connect server --url=https://127.0.0.1:51515 --server-cert-fingerprint=" + h.s.ServerFingerprint() +
		" --override-username=acme --override-hostname=panel --password=acme-pw --config-file=/tmp/acme.config --disable-color"
	if r := run(t, c, connect); r.code != 1 || !strings.HasSuffix(r.stderr, "ERROR error connecting to API server: unable to establish session: 401 Unauthorized\n") {
		t.Fatalf("connect before refresh: exit %d, stderr %q", r.code, r.stderr)
	}
	ok(t, c, "kopia server refresh --address=https://127.0.0.1:51515 --server-cert-fingerprint="+h.s.ServerFingerprint()+" --server-control-password="+ctlPass)
	ok(t, c, connect)
	ok(t, c, "kopia snapshot create /srv/other --config-file=/tmp/acme.config")
	snaps := list(t, c, "--config-file=/tmp/acme.config")
	if len(snaps) != 1 || snaps[0].Source.UserName != "acme" || snaps[0].Source.Host != "panel" {
		t.Errorf("through the server: %+v, want acme's snapshot only", snaps)
	}
	if n := len(list(t, c, "")); n != 2 {
		t.Errorf("directly: %d snapshots, want both", n)
	}
	if us := h.s.Users(); len(us) != 1 || !us[0].Served || us[0].Username != "acme@panel" {
		t.Errorf("users %+v", us)
	}
}

func TestServerRefreshRefusals(t *testing.T) {
	tests := []struct {
		name, flags, stderr string
		served              bool // a repository exists where the server serves from
	}{
		{"server not running", "--server-control-password=" + ctlPass, `ERROR Get "https://127.0.0.1:51515/api/v1/control/refresh": dial tcp 127.0.0.1:51515: connect: connection refused` + "\n", false},
		{"wrong address", "--address=https://10.0.0.9:51515", `ERROR Get "https://10.0.0.9:51515/api/v1/control/refresh": dial tcp 10.0.0.9:51515: connect: connection refused` + "\n", true},
		{"wrong fingerprint", "--server-cert-fingerprint=00ff --server-control-password=" + ctlPass, `ERROR Get "https://127.0.0.1:51515/api/v1/control/refresh": tls: failed to verify certificate: server certificate fingerprint mismatch` + "\n", true},
		{"wrong control password", "--server-control-password=nope", "ERROR 401 Unauthorized: access denied\n", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHost(t)
			c := h.dial(t)
			repo := "/srv/elsewhere"
			if tt.served {
				repo = "/srv/kopia/repo"
			}
			ok(t, c, "kopia repository create filesystem --password=x --path="+repo)
			flags := tt.flags
			if !strings.Contains(flags, "fingerprint") {
				flags += " --server-cert-fingerprint=" + h.s.ServerFingerprint()
			}
			if !strings.Contains(flags, "--address") {
				flags += " --address=https://127.0.0.1:51515"
			}
			r := run(t, c, "kopia server refresh --disable-color "+flags)
			if r.code != 1 || r.stderr != tt.stderr {
				t.Errorf("exit %d, stderr %q", r.code, r.stderr)
			}
		})
	}
}

func TestTextListMergesSnapshotsOfTheSameTree(t *testing.T) {
	_, c := connected(t)
	ok(t, c, "kopia snapshot create /srv/data")
	ok(t, c, "kopia snapshot create /srv/data")
	r := ok(t, c, "kopia snapshot list")
	lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
	if len(lines) != 3 || lines[0] != "backup@backup1:/srv/data" ||
		!strings.HasSuffix(lines[1], " 2.1 KB drwxr-xr-x files:2 dirs:3 (latest-1..2,hourly-1,daily-1,weekly-1,monthly-1,annual-1)") ||
		!strings.HasPrefix(lines[2], "  + 1 identical snapshots until ") {
		t.Errorf("stdout %q", r.stdout)
	}
}

func TestServerUserCommands(t *testing.T) {
	_, c := connected(t)
	ok(t, c, "kopia server users add acme@panel --user-password=one")
	ok(t, c, "kopia server user create globex@panel --user-password=two")
	tests := []struct {
		cmd, stdout, stderr string
		code                int
	}{
		{"kopia server users list", "acme@panel\nglobex@panel\n", "", 0},
		{"kopia server users add acme@panel --user-password=x", "", "ERROR user \"acme@panel\" already exists\n", 1},
		{"kopia server users add Bad --user-password=x", "", "ERROR error setting user profile: username must be specified as lowercase 'user@hostname'\n", 1},
		{"kopia server users add new@panel", "Enter new password for user new@panel: ", "ERROR error asking for password: password prompt error: inappropriate ioctl for device\n", 1},
		{"kopia server users set nobody@panel --user-password=x", "", "ERROR error getting user profile: nobody@panel: user not found\n", 1},
		{"kopia server users set acme@panel", "", "ERROR no change\n", 1},
		{"kopia server users info nobody@panel", "", "ERROR error getting user profile: nobody@panel: user not found\n", 1},
		{"kopia server users delete nobody@panel", "", "User \"nobody@panel\" deleted.\n", 0}, // kopia does not mind
	}
	for _, tt := range tests {
		t.Run(tt.cmd, func(t *testing.T) {
			r := run(t, c, tt.cmd+" --disable-color")
			if r.code != tt.code || r.stdout != tt.stdout || r.stderr != tt.stderr {
				t.Errorf("exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
			}
		})
	}
	var profiles []struct {
		Username            string `json:"username"`
		PasswordHashVersion int    `json:"passwordHashVersion"`
		PasswordHash        []byte `json:"passwordHash"`
	}
	r := ok(t, c, "kopia server users list --json")
	if err := json.Unmarshal([]byte(r.stdout), &profiles); err != nil || len(profiles) != 2 || profiles[0].Username != "acme@panel" || len(profiles[0].PasswordHash) != 64 {
		t.Errorf("list --json %q: %v", r.stdout, err)
	}
	ok(t, c, "kopia server users delete acme@panel")
	if r := ok(t, c, "kopia server users list"); r.stdout != "globex@panel\n" {
		t.Errorf("after delete: %q", r.stdout)
	}
}

func TestScriptedStatusFaultFailsTheNextCommandsOnly(t *testing.T) {
	h, c := connected(t)
	h.s.Inject(simkit.Fault{Op: "snapshot.create", Target: "/srv/data", Times: 2, Status: 503, Message: "repository is locked"})
	for i := range 2 {
		r := run(t, c, "kopia snapshot create /srv/data --disable-color")
		if r.code != 1 || r.stderr != "ERROR repository is locked\n" {
			t.Fatalf("call %d: exit %d, stderr %q", i+1, r.code, r.stderr)
		}
	}
	ok(t, c, "kopia snapshot create /srv/data")
	if n, calls := len(h.s.Snapshots()), h.s.CountCalls("snapshot.create", "/srv/data"); n != 1 || calls != 3 {
		t.Errorf("snapshots %d, calls %d; want 1, 3", n, calls)
	}
}

func TestDropRunsTheCommandButLosesTheExit(t *testing.T) {
	h, c := connected(t)
	h.s.Inject(simkit.Fault{Op: "snapshot.create", Times: 1, Drop: true})
	r := run(t, c, "kopia snapshot create /srv/data --json")
	if r.err == nil || r.code != 0 {
		t.Fatalf("dropped command ended with exit %d, err %v", r.code, r.err)
	}
	if n := len(h.s.Snapshots()); n != 1 {
		t.Errorf("%d snapshots, want the dropped command's", n)
	}
}

func TestHangLastsUntilTheClientGivesUp(t *testing.T) {
	h := newHost(t)
	c := h.dial(t)
	h.s.Inject(simkit.Fault{Op: "snapshot.list", Hang: true})
	sess, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- sess.Run("kopia snapshot list --json") }()
	select {
	case err := <-done:
		t.Fatalf("hung command ended: %v", err)
	case <-time.After(3 * snapTime):
	}
	sess.Close()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("session did not end after the client closed it")
	}
	calls := h.s.Calls()
	if len(calls) != 1 || calls[0].Status != 0 {
		t.Errorf("calls %+v, want one unanswered", calls)
	}
}

func TestLatencyDelaysTheAnswer(t *testing.T) {
	h := newHost(t)
	c := h.dial(t)
	h.s.Inject(simkit.Fault{Op: "snapshot.list", Latency: 3 * snapTime})
	begin := time.Now()
	run(t, c, "kopia snapshot list --json")
	if took := time.Since(begin); took < 3*snapTime {
		t.Errorf("answered after %v", took)
	}
}

func TestTaskErrorSavesASnapshotWithAFatalError(t *testing.T) {
	h, c := connected(t)
	h.s.Inject(simkit.Fault{Op: "snapshot.create", Times: 1, TaskError: "read error: input/output error"})
	r := run(t, c, "kopia snapshot create /srv/data --disable-color")
	if r.code != 1 || !strings.Contains(r.stderr, "read error: input/output error") ||
		!strings.HasSuffix(r.stderr, "ERROR Found 1 fatal error(s) while snapshotting backup@backup1:/srv/data.\n") {
		t.Errorf("exit %d, stderr %q", r.code, r.stderr)
	}
	snaps := list(t, c, "")
	if len(snaps) != 1 || snaps[0].Stats["errorCount"] != 1 || snaps[0].RootEntry["summ"].(map[string]any)["numFailed"] != 1.0 {
		t.Errorf("snapshots %+v, want one with a fatal error", snaps)
	}
}

func TestRandomFaultsRepeatWithTheSameSeed(t *testing.T) {
	outcomes := func() string {
		h := newHost(t)
		c := h.dial(t)
		h.s.SetRandomFaults(simkit.RandomFaults{Rate: 0.3})
		var b strings.Builder
		for range 30 {
			if run(t, c, "kopia repository status").stderr == "\x1b[31mERROR\x1b[0m Service Unavailable\n" {
				b.WriteByte('x')
			} else {
				b.WriteByte('.')
			}
		}
		return b.String()
	}
	first, second := outcomes(), outcomes()
	if first != second || !strings.Contains(first, "x") || !strings.Contains(first, ".") {
		t.Errorf("runs %s and %s: want the same mix", first, second)
	}
}

func TestSnapshotCompletesAfterTheClientLeaves(t *testing.T) {
	h, c := connected(t)
	sess, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	if err := sess.Start("kopia snapshot create /srv/data"); err != nil {
		t.Fatal(err)
	}
	sess.Close()
	deadline := time.Now().Add(2 * time.Second)
	for len(h.s.Snapshots()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the snapshot never completed")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestCallLogRecordsCommandsWithSecretsMasked(t *testing.T) {
	h, c := connected(t)
	ok(t, c, "kopia snapshot create /srv/data")
	run(t, c, "kopia snapshot nope")
	calls := h.s.Calls()
	if len(calls) != 3 {
		t.Fatalf("calls %+v", calls)
	}
	want := []simkit.Call{
		{Method: "exec", Path: "kopia repository create filesystem --path=/srv/repo --password=***", Op: "repository.create", Target: "/srv/repo", Status: 200},
		{Method: "exec", Path: "kopia snapshot create /srv/data", Op: "snapshot.create", Target: "/srv/data", Status: 200},
		{Method: "exec", Path: "kopia snapshot nope", Status: 400},
	}
	for i, w := range want {
		got := calls[i]
		got.Time = time.Time{}
		if got != w {
			t.Errorf("call %d = %+v, want %+v", i, got, w)
		}
	}
}

func TestControlHandlerListsSnapshots(t *testing.T) {
	h, c := connected(t)
	ok(t, c, "kopia snapshot create /srv/data")
	ts := httptest.NewServer(h.s.ControlHandler())
	defer ts.Close()
	res, err := http.Get(ts.URL + "/_sim/snapshots")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	var snaps []snapshotJSON
	if err := json.Unmarshal(body, &snaps); err != nil || len(snaps) != 1 || snaps[0].Source.Path != "/srv/data" {
		t.Errorf("GET /_sim/snapshots = %s (%v)", body, err)
	}
}

func TestSeedDemoConnectsTheLogin(t *testing.T) {
	signer := newKey(t)
	s := sim.New(sim.Config{AuthorizedKeys: []ssh.PublicKey{signer.PublicKey()}, Password: "demo", Files: sim.DemoFiles()})
	if err := s.SeedDemo(login); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(ln)
	t.Cleanup(s.Close)
	c := (&host{s: s, addr: ln.Addr().String(), signer: signer}).dial(t)
	if snaps := list(t, c, "/srv/teams/acme"); len(snaps) != 2 || snaps[0].Tags["tag:team"] != "acme" {
		t.Errorf("demo snapshots %+v", snaps)
	}
}
