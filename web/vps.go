package web

import (
	"net/http"
	"regexp"
	"strconv"
	"strings"

	"golang.org/x/crypto/ssh"

	"github.com/hostfleet/provisiond/jobs"
)

// installRequest is what a new or reinstalled VM is set up with.
type installRequest struct {
	TemplateID int      `json:"templateId"`
	Hostname   string   `json:"hostname"`
	User       string   `json:"user"`
	Password   string   `json:"password"`
	SSHKeys    []string `json:"sshKeys"`
}

var (
	hostnameRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$`)
	userRE     = regexp.MustCompile(`^[a-z_][a-z0-9_-]{0,31}$`)
)

func (req installRequest) validate() []string {
	var errs []string
	if req.TemplateID < 100 || req.TemplateID > 999999999 {
		errs = append(errs, "templateId is required: the VMID of a template (GET /api/services/{id}/templates lists them)")
	}
	if req.Hostname != "" && (len(req.Hostname) > 253 || !hostnameRE.MatchString(req.Hostname)) {
		errs = append(errs, "hostname must be a valid host name such as web1.example.com")
	}
	if req.User != "" && !userRE.MatchString(req.User) {
		errs = append(errs, "user must be a Linux user name: lower case letters, digits, _ and -, at most 32")
	}
	if req.Password != "" && (len(req.Password) < 8 || len(req.Password) > 128 || strings.ContainsAny(req.Password, "\n\r")) {
		errs = append(errs, "password must be 8 to 128 characters on one line")
	}
	if len(req.SSHKeys) > 20 {
		errs = append(errs, "sshKeys may hold at most 20 keys")
	}
	for i, k := range req.SSHKeys {
		if _, _, _, rest, err := ssh.ParseAuthorizedKey([]byte(k)); err != nil || len(strings.TrimSpace(string(rest))) > 0 {
			errs = append(errs, "sshKeys["+strconv.Itoa(i)+"] is not a public key in authorized_keys format")
		}
	}
	return errs
}

// install splits the request into job arguments and the secrets to seal.
func (req installRequest) install() (jobs.Install, any) {
	in := jobs.Install{TemplateID: req.TemplateID, Hostname: req.Hostname, User: req.User, SSHKeys: req.SSHKeys}
	if req.Password == "" {
		return in, nil
	}
	return in, jobs.InstallSecrets{Password: req.Password}
}

// templates lists the templates a VPS may be installed from.
func (s *Server) templates(w http.ResponseWriter, r *http.Request) error {
	if _, err := s.teamService(r); err != nil {
		return err
	}
	if s.Proxmox == nil {
		return providerMissing("proxmox")
	}
	ts, err := s.Proxmox.Templates(r.Context())
	if err != nil {
		return providerError(err)
	}
	out := make([]map[string]any, 0, len(ts))
	for _, t := range ts {
		out = append(out, map[string]any{"id": t.VMID, "name": t.Name, "node": t.Node})
	}
	ok(w, http.StatusOK, "templates", out)
	return nil
}
