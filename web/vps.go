package web

import (
	"errors"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/crypto/ssh"

	"github.com/hostfleet/provisiond/jobs"
	"github.com/hostfleet/provisiond/queries"
)

// installRequest is what a new or reinstalled VM is set up with.
type installRequest struct {
	TemplateID int `json:"templateId"`
	// OS names a template instead of TemplateID (a reinstall resolves it).
	OS       string   `json:"os"`
	Hostname string   `json:"hostname"`
	User     string   `json:"user"`
	Password string   `json:"password"`
	SSHKeys  []string `json:"sshKeys"`
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
	if msg := validatePassword(req.Password); msg != "" {
		errs = append(errs, msg)
	}
	return append(errs, validateSSHKeys(req.SSHKeys)...)
}

// validateSSHKeys checks public keys given for an install.
func validateSSHKeys(keys []string) []string {
	var errs []string
	if len(keys) > 20 {
		errs = append(errs, "sshKeys may hold at most 20 keys")
	}
	for i, k := range keys {
		if _, _, _, rest, err := ssh.ParseAuthorizedKey([]byte(k)); err != nil || len(strings.TrimSpace(string(rest))) > 0 {
			errs = append(errs, "sshKeys["+strconv.Itoa(i)+"] is not a public key in authorized_keys format")
		}
	}
	return errs
}

// validatePassword checks an optional root password and says what is
// wrong with it, or "". Control characters cannot be typed at a login, and
// U+FFFD is what JSON decoding made of bytes that were not UTF-8: the
// password set would not be the one the caller meant.
func validatePassword(pw string) string {
	bad := strings.ContainsFunc(pw, func(r rune) bool { return unicode.IsControl(r) || r == utf8.RuneError })
	if pw != "" && (len(pw) < 8 || len(pw) > 128 || bad) {
		return "password must be 8 to 128 printable characters"
	}
	return ""
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
	if _, err := s.proxmoxService(r); err != nil {
		return err
	}
	ts, err := s.VPS.Templates(r.Context())
	if err != nil {
		return providerError(err)
	}
	ok(w, http.StatusOK, "templates", ts)
	return nil
}

// proxmoxService loads the {id} service, which must be a Proxmox one, for
// a live read.
func (s *Server) proxmoxService(r *http.Request) (queries.Service, error) {
	svc, err := s.teamService(r)
	if err != nil {
		return svc, err
	}
	if svc.Provider != jobs.ProviderProxmox {
		return svc, s.wrongProvider(jobs.ProviderProxmox, svc.Provider)
	}
	if s.VPS == nil {
		return svc, providerMissing(jobs.ProviderProxmox)
	}
	return svc, nil
}

// usableProxmoxService loads the {id} service, which must be a Proxmox one
// that a job can act on.
func (s *Server) usableProxmoxService(r *http.Request) (queries.Service, error) {
	svc, err := s.proxmoxService(r)
	if err != nil {
		return svc, err
	}
	if aerr := usable(svc); aerr != nil {
		return svc, aerr
	}
	return svc, nil
}

// liveVPS loads the {id} service for a live read of its VM: one whose
// reference may name someone else's VM now (needs_repair), or that has no
// VM yet, is not read.
func (s *Server) liveVPS(r *http.Request) (queries.Service, error) {
	svc, err := s.proxmoxService(r)
	if err != nil {
		return svc, err
	}
	if svc.Status == "needs_repair" || svc.Status == "terminated" {
		return svc, usable(svc)
	}
	if _, err := jobs.ProxmoxRef(&svc); err != nil {
		return svc, &apiError{Status: http.StatusConflict, ErrorKey: "service_pending", Message: "Service is not provisioned yet"}
	}
	return svc, nil
}

// liveReadError answers a live read of the service's VM or server that
// failed: the resource being changed by a job, found gone or another's
// (the service is marked needs_repair), or the provider's error.
func liveReadError(svc *queries.Service, err error) error {
	switch {
	case errors.Is(err, jobs.ErrServiceBusy):
		return &apiError{Status: http.StatusConflict, ErrorKey: "service_busy", Message: "A job is changing the service's VM or server; try again when it has ended"}
	case errors.Is(err, jobs.ErrNeedsRepair):
		return needsRepair(*svc)
	}
	return providerError(err)
}

// repairRequest optionally names the template to make a VM from (required
// when none was recorded, as for a registered VM) and a root password for it.
type repairRequest struct {
	TemplateID int    `json:"templateId"`
	Password   string `json:"password"`
}

// repair starts a repair of a VPS whose VM is missing, half-made or not its
// own (see jobs.VPSWorkers.Repair); a pending service whose provision never
// finished can be repaired too.
func (s *Server) repair(w http.ResponseWriter, r *http.Request) error {
	svc, err := s.proxmoxService(r)
	if err != nil {
		return err
	}
	switch svc.Status {
	case "terminated":
		return usable(svc)
	case "active", "suspended":
		return &apiError{Status: http.StatusConflict, ErrorKey: "service_sound",
			Message: "Service does not need repair; repair is for a service that needs_repair or whose provision never finished"}
	}
	if svc.TerminateAt != nil && !svc.TerminateAt.After(s.now()) {
		return &apiError{Status: http.StatusConflict, ErrorKey: "termination_due",
			Message: "Service is being terminated; a repair would make a VM for a cancelled service"}
	}
	var req repairRequest
	if aerr := readOptionalJSON(w, r, &req); aerr != nil {
		return aerr
	}
	var errs []string
	if req.TemplateID != 0 && (req.TemplateID < 100 || req.TemplateID > 999999999) {
		errs = append(errs, "templateId must be the VMID of a template (GET /api/services/{id}/templates lists them)")
	}
	if _, recorded := jobs.ServiceInstall(&svc); !recorded && req.TemplateID == 0 {
		if _, err := jobs.ProxmoxRef(&svc); err != nil || svc.Status == "needs_repair" {
			errs = append(errs, "templateId is required: no install was recorded for this service")
		}
	}
	if msg := validatePassword(req.Password); msg != "" {
		errs = append(errs, msg)
	}
	if len(errs) > 0 {
		return invalid(errs...)
	}
	var secrets any
	if req.Password != "" {
		secrets = jobs.InstallSecrets{Password: req.Password}
	}
	job, replayed, err := s.recordJob(r, svc.ID, jobs.RepairArgs{ServiceID: svc.ID, TemplateID: req.TemplateID}, secrets)
	if err != nil {
		return err
	}
	answerJob(w, s.logger(r), job, replayed)
	return nil
}

// liveReader loads the {id} service for a live read through its
// provider's LiveReader: one that has no resource yet, or whose reference
// may name another's resource now (needs_repair), is not read.
func (s *Server) liveReader(r *http.Request) (queries.Service, jobs.LiveReader, error) {
	svc, err := s.teamService(r)
	if err != nil {
		return svc, nil, err
	}
	p, ok := jobs.Capability[jobs.LiveReader](s.Providers, svc.Provider)
	if _, registered := s.Providers.Lookup(svc.Provider); !registered {
		return svc, nil, providerMissing(svc.Provider)
	} else if !ok {
		return svc, nil, s.unsupported(svc.Provider)
	}
	if svc.Status == "needs_repair" || svc.Status == "terminated" {
		return svc, nil, usable(svc)
	}
	linked := svc.Status != "pending"
	if v, ok := jobs.Capability[jobs.Verifier](s.Providers, svc.Provider); ok && linked {
		_, linked = v.Resource(&svc)
	}
	if !linked {
		return svc, nil, &apiError{Status: http.StatusConflict, ErrorKey: "service_pending", Message: "Service is not provisioned yet"}
	}
	return svc, p, nil
}

// serviceStatus answers the service's resource's state (power, usage,
// what it runs), live from its provider.
func (s *Server) serviceStatus(w http.ResponseWriter, r *http.Request) error {
	svc, p, err := s.liveReader(r)
	if err != nil {
		return err
	}
	st, err := p.LiveStatus(r.Context(), &svc, s.logger(r))
	if err != nil {
		return liveReadError(&svc, err)
	}
	ok(w, http.StatusOK, "status", st)
	return nil
}

// traffic answers the service's network traffic over a timeframe, live
// from its provider (a VM's RRD, a server's switch ports).
func (s *Server) traffic(w http.ResponseWriter, r *http.Request) error {
	tf, err := timeframe(r)
	if err != nil {
		return err
	}
	svc, p, err := s.liveReader(r)
	if err != nil {
		return err
	}
	t, err := p.Traffic(r.Context(), &svc, tf, s.logger(r))
	if err != nil {
		return liveReadError(&svc, err)
	}
	ok(w, http.StatusOK, "traffic", t)
	return nil
}

// timeframe reads the ?timeframe of a traffic read (one of
// jobs.Timeframes, default hour).
func timeframe(r *http.Request) (string, error) {
	tf := r.URL.Query().Get("timeframe")
	if tf == "" {
		tf = "hour"
	}
	if !slices.Contains(jobs.Timeframes, tf) {
		return "", invalid(oneOf("timeframe", jobs.Timeframes))
	}
	return tf, nil
}

// reinstall installs the VPS afresh from a template; its disk's contents
// are lost.
func (s *Server) reinstall(w http.ResponseWriter, r *http.Request) error {
	svc, err := s.usableProxmoxService(r)
	if err != nil {
		return err
	}
	body, aerr := readBody(w, r)
	if aerr != nil {
		return aerr
	}
	var req installRequest
	if aerr := decodeJSON(body, &req); aerr != nil {
		return aerr
	}
	if req.OS != "" && req.TemplateID == 0 {
		if req.TemplateID, err = s.templateNamed(r, req.OS); err != nil {
			return err
		}
	}
	if errs := req.validate(); len(errs) > 0 {
		return invalid(errs...)
	}
	in, secrets := req.install()
	job, replayed, err := s.recordJob(r, svc.ID, jobs.ReinstallArgs{ServiceID: svc.ID, Install: in}, secrets)
	if err != nil {
		return err
	}
	answerJob(w, s.logger(r), job, replayed)
	return nil
}

// templateNamed finds the VMID of the template with the given name.
func (s *Server) templateNamed(r *http.Request, name string) (int, error) {
	ts, err := s.VPS.Templates(r.Context())
	if err != nil {
		return 0, providerError(err)
	}
	var names []string
	for _, t := range ts {
		if t.Name == name {
			return t.ID, nil
		}
		names = append(names, t.Name)
	}
	return 0, invalid(oneOf("os", names))
}

// rescue boots the VPS into the rescue system (POST) or back out of it
// (DELETE). The generated root password comes once with the finished job.
func (s *Server) rescue(w http.ResponseWriter, r *http.Request) error {
	svc, err := s.usableProxmoxService(r)
	if err != nil {
		return err
	}
	return s.insertJob(w, r, svc.ID, jobs.RescueArgs{ServiceID: svc.ID, Enable: r.Method == http.MethodPost})
}
