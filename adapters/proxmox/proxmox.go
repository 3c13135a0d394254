// Package proxmox carries out operations on Proxmox VE virtual machines
// through github.com/luthermonson/go-proxmox, and classifies every failure
// (see package failure) so that jobs know whether to retry.
package proxmox

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	pve "github.com/luthermonson/go-proxmox"

	"github.com/hostfleet/provisiond/adapters/failure"
)

// Provider is the provider name used in errors, logs and metrics.
const Provider = "proxmox"

// Config says how to reach one Proxmox VE cluster.
type Config struct {
	// URL is the API base, ending in /api2/json.
	URL string
	// TokenID is "user@realm!tokenid"; TokenSecret its secret.
	TokenID     string
	TokenSecret string
	// CAFile is a PEM bundle to trust for the cluster's self-signed
	// certificate. Empty means the system roots.
	CAFile string
	// RequestTimeout bounds one HTTP request.
	RequestTimeout time.Duration
	// PollInterval is how often a running task's status is read.
	PollInterval time.Duration
	// ConsoleUser ("user@realm") and ConsolePassword log in for consoles:
	// PVE refuses API tokens on vncwebsocket. Without them consoles are off.
	ConsoleUser     string
	ConsolePassword string
	// Transport, when set, carries the requests instead of a clone of
	// http.DefaultTransport (and CAFile is ignored): for a proxy, or for
	// tests that replay recorded answers.
	Transport http.RoundTripper
}

// Observer records provider calls; *metrics.Metrics implements it.
type Observer interface {
	ObserveProviderCall(provider, op string, err error, d time.Duration)
}

// Client talks to one Proxmox VE cluster.
type Client struct {
	api  *pve.Client
	poll time.Duration
	obs  Observer
	// login is a client that logs in with a user and password, for the
	// calls PVE refuses to API tokens (consoles); nil without them.
	login   *pve.Client
	base    string
	tokenID string
	timeout time.Duration
	tls     *tls.Config
}

// VMRef names a virtual machine on a node.
type VMRef struct {
	Node string `json:"node"`
	VMID int    `json:"vmid"`
}

// New returns a Client for cfg. obs may be nil.
func New(cfg Config, obs Observer) (*Client, error) {
	if cfg.URL == "" || cfg.TokenID == "" || cfg.TokenSecret == "" {
		return nil, errors.New("proxmox: URL, token id and token secret are required")
	}
	if _, err := url.Parse(cfg.URL); err != nil {
		return nil, fmt.Errorf("proxmox: bad URL: %w", err)
	}
	next := cfg.Transport
	if next == nil {
		base, err := transport(cfg.CAFile)
		if err != nil {
			return nil, err
		}
		next = base
	}
	timeout := cfg.RequestTimeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	poll := cfg.PollInterval
	if poll <= 0 {
		poll = time.Second
	}
	hc := &http.Client{Transport: statusTransport{next: next}, Timeout: timeout}
	base := strings.TrimRight(cfg.URL, "/")
	api := pve.NewClient(base,
		pve.WithHTTPClient(hc),
		pve.WithAPIToken(cfg.TokenID, cfg.TokenSecret),
		pve.WithUserAgent("provisiond"),
	)
	c := &Client{api: api, poll: poll, obs: obs, base: base, tokenID: cfg.TokenID, timeout: timeout, tls: tlsConfig(next)}
	if cfg.ConsoleUser != "" && cfg.ConsolePassword != "" {
		c.login = pve.NewClient(base, pve.WithHTTPClient(hc), pve.WithUserAgent("provisiond"),
			pve.WithCredentials(&pve.Credentials{Username: cfg.ConsoleUser, Password: cfg.ConsolePassword}))
	}
	return c, nil
}

// transport is a connection pool for one cluster, trusting caFile's
// certificates when it is set.
func transport(caFile string) (*http.Transport, error) {
	base := &http.Transport{
		Proxy:             http.ProxyFromEnvironment,
		ForceAttemptHTTP2: true,
		// A worker holds thousands of jobs polling one cluster; connections
		// it keeps spare it need not set up again.
		MaxIdleConns:        256,
		MaxIdleConnsPerHost: 256,
		IdleConnTimeout:     90 * time.Second,
		TLSHandshakeTimeout: 10 * time.Second,
	}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("proxmox: read CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("proxmox: %s holds no PEM certificate", caFile)
		}
		base.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return base, nil
}

// PollInterval is how often the client reads a task's status; jobs waiting
// on other Proxmox state poll as often.
func (c *Client) PollInterval() time.Duration { return c.poll }

// State is a VM's power state as Proxmox reports it.
type State struct {
	Status    string // "running" or "stopped"
	QMPStatus string // "running", "paused", "prelaunch", ...
	Lock      string
	Uptime    uint64
}

// Running reports whether the guest is running and not paused.
func (s State) Running() bool { return s.Status == "running" && s.QMPStatus != "paused" }

// Paused reports whether the guest is suspended to memory.
func (s State) Paused() bool { return s.Status == "running" && s.QMPStatus == "paused" }

// Stopped reports whether the guest is off.
func (s State) Stopped() bool { return s.Status == "stopped" }

// PowerState names the state the way services record it: running, paused or stopped.
func (s State) PowerState() string {
	switch {
	case s.Paused():
		return "paused"
	case s.Running():
		return "running"
	default:
		return "stopped"
	}
}

// State reads the VM's current status.
func (c *Client) State(ctx context.Context, ref VMRef) (State, error) {
	u, err := c.Usage(ctx, ref)
	return u.State, err
}

// PowerOp is a power operation Proxmox runs as a task.
type PowerOp string

// The power operations and the Proxmox task type each starts.
const (
	OpStart    PowerOp = "start"    // qmstart
	OpStop     PowerOp = "stop"     // qmstop: hard power-off
	OpShutdown PowerOp = "shutdown" // qmshutdown: ACPI, fails after its timeout
	OpReset    PowerOp = "reset"    // qmreset
	OpSuspend  PowerOp = "suspend"  // qmpause: pause to memory
	OpResume   PowerOp = "resume"   // qmresume
)

// TaskType returns the Proxmox task type the operation starts. A pause is
// qmpause; qmsuspend is PVE's name for hibernating (suspend with todisk).
func (op PowerOp) TaskType() string {
	if op == OpSuspend {
		return "qmpause"
	}
	return "qm" + string(op)
}

// PowerOptions tune a power operation.
type PowerOptions struct {
	// ShutdownTimeout is how long Proxmox waits for the guest on OpShutdown
	// before the task fails.
	ShutdownTimeout time.Duration
}

// Power starts a power task and returns its UPID without waiting for it.
func (c *Client) Power(ctx context.Context, ref VMRef, op PowerOp, opts PowerOptions) (string, error) {
	var body map[string]any
	if op == OpShutdown && opts.ShutdownTimeout > 0 {
		body = map[string]any{"timeout": int(opts.ShutdownTimeout.Seconds())}
	}
	var upid pve.UPID
	err := c.call(ctx, string(op), func(ctx context.Context) error {
		return c.api.Post(ctx, fmt.Sprintf("/nodes/%s/qemu/%d/status/%s", url.PathEscape(ref.Node), ref.VMID, op), body, &upid)
	})
	if err != nil {
		return "", err
	}
	return c.checkUPID(string(op), string(upid))
}

// Task is a task as a node's task list shows it.
type Task struct {
	UPID string
	Type string
	// User is who started it: "user@realm!token" for an API token.
	User string
	// Start is when it started, by the node's clock.
	Start time.Time
}

// Tasks lists the node's tasks of a type about the VM, newest first: the
// running ones, and with a non-zero since also those that started since
// then (by the node's clock) and have ended.
func (c *Client) Tasks(ctx context.Context, ref VMRef, taskType string, since time.Time) ([]Task, error) {
	opts := &pve.NodeTasksOptions{Source: "active", VMID: ref.VMID, TypeFilter: taskType, Limit: 500}
	if !since.IsZero() {
		opts.Source, opts.Since = "all", since.Unix()
	}
	var tasks []*pve.Task
	err := c.call(ctx, "tasks.list", func(ctx context.Context) error {
		var err error
		tasks, err = (&pve.Node{}).New(c.api, ref.Node).Tasks(ctx, opts)
		return err
	})
	if err != nil {
		return nil, err
	}
	out := make([]Task, 0, len(tasks))
	for _, t := range tasks {
		if t == nil {
			continue
		}
		// A backup delete's id is "VMID@storage".
		if id, _, _ := strings.Cut(t.ID, "@"); t.Type != taskType || id != strconv.Itoa(ref.VMID) || !upidRE.MatchString(string(t.UPID)) {
			continue
		}
		if !since.IsZero() && t.StartTime.Before(since) {
			continue
		}
		out = append(out, Task{UPID: string(t.UPID), Type: t.Type, User: t.User, Start: t.StartTime})
	}
	return out, nil
}

// Busy reports whether a task of any type is running on the VM (for a
// clone, on the template it is made from).
func (c *Client) Busy(ctx context.Context, ref VMRef) (bool, error) {
	return c.Running(ctx, ref.Node, ref.VMID, "")
}

// Running reports whether a task runs on the node: of taskType (any when
// ""), about vmid (any when 0).
func (c *Client) Running(ctx context.Context, node string, vmid int, taskType string) (bool, error) {
	var tasks []*pve.Task
	err := c.call(ctx, "tasks.list", func(ctx context.Context) error {
		var err error
		tasks, err = (&pve.Node{}).New(c.api, node).Tasks(ctx, &pve.NodeTasksOptions{Source: "active", VMID: vmid, TypeFilter: taskType})
		return err
	})
	if err != nil {
		return false, err
	}
	return slices.ContainsFunc(tasks, func(t *pve.Task) bool {
		return t != nil && (vmid == 0 || t.ID == strconv.Itoa(vmid)) && (taskType == "" || t.Type == taskType)
	}), nil
}

// TokenID is the API token the client acts as: the user of every task it
// starts.
func (c *Client) TokenID() string { return c.tokenID }

// NodeTime reads the node's clock and returns how far it is ahead of ours
// (negative when behind), give or take the round trip, which is returned
// too: task start times are the node's, so a caller comparing them with its
// own clock must add the skew.
func (c *Client) NodeTime(ctx context.Context, node string) (skew, uncertainty time.Duration, err error) {
	var t struct {
		Time int64 `json:"time"`
	}
	before := time.Now()
	err = c.call(ctx, "node.time", func(ctx context.Context) error {
		return c.api.Get(ctx, fmt.Sprintf("/nodes/%s/time", url.PathEscape(node)), &t)
	})
	if err != nil {
		return 0, 0, err
	}
	after := time.Now()
	mid := before.Add(after.Sub(before) / 2)
	// The node answers in whole seconds: the reading is up to a second off.
	return time.Unix(t.Time, 0).Sub(mid), after.Sub(before)/2 + time.Second, nil
}

// upidRE is the shape of a UPID (pve-common's upid_decode: pstart has 8 or,
// on a node up for more than about 497 days, 9 hex digits); go-proxmox
// panics on a shorter one, so every UPID is checked before it is handed to it.
var upidRE = regexp.MustCompile(`^UPID:[^:]+:[0-9A-Fa-f]{8}:[0-9A-Fa-f]{8,9}:[0-9A-Fa-f]{8}:[^:]+:[^:]*:[^:]+:$`)

// ErrTaskFailed is wrapped by WaitTask's error when the task ended with an
// exit status that PVE counts as an error.
var ErrTaskFailed = errors.New("proxmox task failed")

// warningsRE is the exit status of a task that succeeded with warnings;
// pve-common's upid_status_is_error counts only "OK" and this as success.
var warningsRE = regexp.MustCompile(`^WARNINGS: \d+$`)

// TaskEnd is how a task that succeeded ended.
type TaskEnd struct {
	// ExitStatus is "OK" or "WARNINGS: n".
	ExitStatus string
	// Warnings are the task log's warning lines when it ended with
	// warnings.
	Warnings []string
}

// WaitTask polls the task until it stops. It returns how it ended when PVE
// counts that as success (OK, or warnings), and a classified error wrapping
// ErrTaskFailed with the task's exit status otherwise. go-proxmox's own
// Task.Wait is not used: it ignores the context while sleeping and returns
// nil for failed tasks.
func (c *Client) WaitTask(ctx context.Context, upid string) (TaskEnd, error) {
	if !upidRE.MatchString(upid) {
		return TaskEnd{}, &failure.Error{Class: failure.Permanent, Provider: Provider, Op: "task.status",
			Message: fmt.Sprintf("malformed task id %q", upid)}
	}
	tick := time.NewTicker(c.poll)
	defer tick.Stop()
	for {
		task := pve.NewTask(pve.UPID(upid), c.api)
		if err := c.call(ctx, "task.status", task.Ping); err != nil {
			return TaskEnd{}, err
		}
		if task.IsCompleted {
			switch {
			case task.ExitStatus == "OK":
				return TaskEnd{ExitStatus: "OK"}, nil
			case warningsRE.MatchString(task.ExitStatus):
				return TaskEnd{ExitStatus: task.ExitStatus, Warnings: c.taskWarnings(ctx, task)}, nil
			}
			return TaskEnd{}, taskError(task)
		}
		select {
		case <-ctx.Done():
			return TaskEnd{}, ctx.Err()
		case <-tick.C:
		}
	}
}

// StopTask asks the node to stop a running task (PVE kills its worker); a
// task that has ended already is left as it is.
func (c *Client) StopTask(ctx context.Context, upid string) error {
	if !upidRE.MatchString(upid) {
		return permanentf("task.stop", fmt.Sprintf("malformed task id %q", upid))
	}
	node := strings.Split(upid, ":")[1]
	return c.call(ctx, "task.stop", func(ctx context.Context) error {
		return c.api.Delete(ctx, fmt.Sprintf("/nodes/%s/tasks/%s", url.PathEscape(node), url.PathEscape(upid)), nil)
	})
}

// taskWarnings reads the warning lines of a finished task's log; a log that
// cannot be read leaves them out (the task succeeded all the same).
func (c *Client) taskWarnings(ctx context.Context, t *pve.Task) []string {
	var lines []struct {
		T string `json:"t"`
	}
	p := fmt.Sprintf("/nodes/%s/tasks/%s/log?start=0&limit=1000", url.PathEscape(t.Node), url.PathEscape(string(t.UPID)))
	if err := c.call(ctx, "task.log", func(ctx context.Context) error { return c.api.Get(ctx, p, &lines) }); err != nil {
		return nil
	}
	var out []string
	for _, l := range lines {
		if w, ok := strings.CutPrefix(l.T, "WARN: "); ok {
			out = append(out, w)
		}
	}
	return out
}

// taskError classifies a task's failing exit status. A lock held by another
// task clears by itself; anything else is the provider's verdict.
func taskError(t *pve.Task) error {
	class := failure.Permanent
	if strings.Contains(t.ExitStatus, "is locked") || strings.Contains(t.ExitStatus, "got timeout") {
		class = failure.Transient
	}
	return &failure.Error{Class: class, Provider: Provider, Op: t.Type,
		Message: t.ExitStatus, Err: ErrTaskFailed}
}

// call runs one API request, records it and classifies its error.
func (c *Client) call(ctx context.Context, op string, fn func(context.Context) error) error {
	start := time.Now()
	err := classify(op, fn(ctx))
	if c.obs != nil {
		c.obs.ObserveProviderCall(Provider, op, err, time.Since(start))
	}
	return err
}

// classify turns a go-proxmox or transport error into a *failure.Error.
// Context errors are returned as they are: they say the job stopped, not the
// provider.
func classify(op string, err error) error {
	if err == nil || errors.Is(err, context.Canceled) {
		return err
	}
	fe := &failure.Error{Class: failure.Transient, Provider: Provider, Op: op, Err: err}
	var he *httpError
	var ne net.Error
	switch {
	case errors.As(err, &he):
		fe.Status, fe.RetryAfter, fe.Message = he.Status, he.RetryAfter, he.Reason
		if len(he.Params) > 0 {
			fe.Message = paramMessage(he)
		}
		fe.Class = statusClass(he.Status, he.Reason)
		if missing(he.Reason) {
			fe.Err = fmt.Errorf("%w: %w", ErrNotFound, err)
		}
	case errors.Is(err, pve.ErrNotAuthorized):
		fe.Class, fe.Status, fe.Message = failure.Permanent, http.StatusUnauthorized, "Proxmox rejected the API token"
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne):
		fe.Message = "Proxmox did not answer in time or the connection failed"
	default:
		// A malformed body or a dropped connection mid-answer: worth another try.
		fe.Message = "unreadable answer from Proxmox"
	}
	return fe
}

func statusClass(status int, reason string) failure.Class {
	switch {
	case status == http.StatusTooManyRequests, status == http.StatusRequestTimeout:
		return failure.Transient
	case status == http.StatusInternalServerError:
		// PVE answers 500 for its own refusals too; those that name a missing
		// object will not go away by themselves.
		if missing(reason) {
			return failure.Permanent
		}
		return failure.Transient
	case status >= 500 && status != http.StatusNotImplemented:
		return failure.Transient
	default:
		return failure.Permanent
	}
}

// missing reports whether a PVE refusal says the object does not exist.
func missing(reason string) bool {
	return strings.Contains(reason, "does not exist") || strings.Contains(reason, "no such")
}

func paramMessage(he *httpError) string {
	parts := make([]string, 0, len(he.Params))
	for _, k := range slices.Sorted(maps.Keys(he.Params)) {
		parts = append(parts, k+": "+strings.TrimSpace(he.Params[k]))
	}
	return strings.TrimSpace(he.Reason + " " + strings.Join(parts, "; "))
}
