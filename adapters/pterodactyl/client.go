package pterodactyl

import (
	"context"
	"net/http"
	"net/url"
	"time"
)

// Resources are a server's power state and usage as Wings reports them.
// State is "offline", "starting", "running" or "stopping".
type Resources struct {
	State                                     string
	Suspended                                 bool
	MemoryBytes, CPUAbsolute                  float64 // CPUAbsolute in percent of one core
	DiskBytes, NetworkRxBytes, NetworkTxBytes int64
	UptimeMs                                  int64
}

// Resources reads a server's power state and usage. It works while the
// server is suspended, not while it installs or restores (409, transient)
// nor once its install failed (409, permanent).
func (c *Client) Resources(ctx context.Context, identifier string) (Resources, error) {
	var out item[struct {
		CurrentState string `json:"current_state"`
		IsSuspended  bool   `json:"is_suspended"`
		Resources    struct {
			MemoryBytes    float64 `json:"memory_bytes"`
			CPUAbsolute    float64 `json:"cpu_absolute"`
			DiskBytes      int64   `json:"disk_bytes"`
			NetworkRxBytes int64   `json:"network_rx_bytes"`
			NetworkTxBytes int64   `json:"network_tx_bytes"`
			Uptime         int64   `json:"uptime"` // milliseconds
		} `json:"resources"`
	}]
	if err := c.clientCall(ctx, "client.resources", http.MethodGet, identifier, "/resources", nil, &out); err != nil {
		return Resources{}, err
	}
	a, r := out.Attributes, out.Attributes.Resources
	return Resources{State: a.CurrentState, Suspended: a.IsSuspended, MemoryBytes: r.MemoryBytes, CPUAbsolute: r.CPUAbsolute,
		DiskBytes: r.DiskBytes, NetworkRxBytes: r.NetworkRxBytes, NetworkTxBytes: r.NetworkTxBytes, UptimeMs: r.Uptime}, nil
}

// Power sends a power signal: start, stop, restart or kill. Wings carries
// it out in the background and succeeds even when it then ignores it (a
// start while running, a stop while another stop runs): poll Resources for
// the outcome.
func (c *Client) Power(ctx context.Context, identifier, signal string) error {
	body := map[string]string{"signal": signal}
	return c.clientCall(ctx, "client.power", http.MethodPost, identifier, "/power", body, nil)
}

// Command writes a command to the server's console. A stopped server
// refuses it with a 502.
func (c *Client) Command(ctx context.Context, identifier, command string) error {
	body := map[string]string{"command": command}
	return c.clientCall(ctx, "client.command", http.MethodPost, identifier, "/command", body, nil)
}

// WebsocketCredentials returns a JWT for the server's console websocket
// on Wings and the socket's URL. The token lives ten minutes; it is a
// secret and must not be logged.
func (c *Client) WebsocketCredentials(ctx context.Context, identifier string) (token, socketURL string, err error) {
	var out struct {
		Data struct {
			Token  string `json:"token"`
			Socket string `json:"socket"`
		} `json:"data"`
	}
	if err := c.clientCall(ctx, "client.websocket", http.MethodGet, identifier, "/websocket", nil, &out); err != nil {
		return "", "", err
	}
	return out.Data.Token, out.Data.Socket, nil
}

// StartupVariables lists the server's variables its users may view, with
// their values.
func (c *Client) StartupVariables(ctx context.Context, identifier string) ([]Variable, error) {
	var out list[variableJSON]
	if err := c.clientCall(ctx, "client.startup", http.MethodGet, identifier, "/startup", nil, &out); err != nil {
		return nil, err
	}
	vars := make([]Variable, 0, len(out.Data))
	for _, v := range out.Data {
		vars = append(vars, v.Attributes.clientVariable())
	}
	return vars, nil
}

// SetStartupVariable sets one variable users may edit (by its environment
// name) and returns it. The panel checks the value against the variable's
// rules (422) and refuses read-only and unknown variables (400).
func (c *Client) SetStartupVariable(ctx context.Context, identifier, key, value string) (Variable, error) {
	var out item[variableJSON]
	body := map[string]string{"key": key, "value": value}
	if err := c.clientCall(ctx, "client.startup.variable", http.MethodPut, identifier, "/startup/variable", body, &out); err != nil {
		return Variable{}, err
	}
	return out.Attributes.clientVariable(), nil
}

// clientVariable is a variable of the client API, which lists only the
// variables users may view and says is_editable.
func (v variableJSON) clientVariable() Variable {
	out := v.variable()
	out.UserViewable, out.UserEditable = true, v.IsEditable
	return out
}

// Allocation is an IP and port assigned to a server.
type Allocation struct {
	ID          int
	IP, IPAlias string
	Port        int
	Notes       string
	// Default marks the server's primary allocation.
	Default bool
}

// Allocations lists the allocations assigned to a server.
func (c *Client) Allocations(ctx context.Context, identifier string) ([]Allocation, error) {
	var out list[struct {
		ID        int    `json:"id"`
		IP        string `json:"ip"`
		IPAlias   string `json:"ip_alias"`
		Port      int    `json:"port"`
		Notes     string `json:"notes"`
		IsDefault bool   `json:"is_default"`
	}]
	if err := c.clientCall(ctx, "client.allocations", http.MethodGet, identifier, "/network/allocations", nil, &out); err != nil {
		return nil, err
	}
	allocs := make([]Allocation, 0, len(out.Data))
	for _, it := range out.Data {
		a := it.Attributes
		allocs = append(allocs, Allocation{ID: a.ID, IP: a.IP, IPAlias: a.IPAlias, Port: a.Port, Notes: a.Notes, Default: a.IsDefault})
	}
	return allocs, nil
}

// Backup is a server backup. CompletedAt is nil while it runs; a backup
// that completed without Successful failed.
type Backup struct {
	UUID, Name, Checksum string
	Successful, Locked   bool
	Bytes                int64
	IgnoredFiles         []string
	CreatedAt            time.Time
	CompletedAt          *time.Time
}

// backupJSON is the client API's backup item.
type backupJSON struct {
	UUID         string     `json:"uuid"`
	Name         string     `json:"name"`
	Checksum     string     `json:"checksum"`
	IsSuccessful bool       `json:"is_successful"`
	IsLocked     bool       `json:"is_locked"`
	Bytes        int64      `json:"bytes"`
	IgnoredFiles []string   `json:"ignored_files"`
	CreatedAt    time.Time  `json:"created_at"`
	CompletedAt  *time.Time `json:"completed_at"`
}

func (b backupJSON) backup() Backup {
	return Backup{UUID: b.UUID, Name: b.Name, Checksum: b.Checksum, Successful: b.IsSuccessful, Locked: b.IsLocked,
		Bytes: b.Bytes, IgnoredFiles: b.IgnoredFiles, CreatedAt: b.CreatedAt, CompletedAt: b.CompletedAt}
}

// Backups lists all of a server's backups, oldest first, reading every
// page.
func (c *Client) Backups(ctx context.Context, identifier string) ([]Backup, error) {
	send := func(ctx context.Context, path string, out any) error {
		return c.clientCall(ctx, "backups.list", http.MethodGet, identifier, path, nil, out)
	}
	raw, err := allPages[backupJSON](ctx, send, "/backups")
	if err != nil {
		return nil, err
	}
	backups := make([]Backup, 0, len(raw))
	for _, b := range raw {
		backups = append(backups, b.backup())
	}
	return backups, nil
}

// CreateBackup starts a backup, named name (the panel names it after the
// time when empty). It runs on Wings: poll Backup until CompletedAt is set.
// The panel refuses it past the server's backup limit (400) and throttles
// how many start in a while (429 with Retry-After).
func (c *Client) CreateBackup(ctx context.Context, identifier, name string) (Backup, error) {
	body := struct {
		Name string `json:"name,omitempty"`
	}{name}
	var out item[backupJSON]
	if err := c.clientCall(ctx, "backups.create", http.MethodPost, identifier, "/backups", body, &out); err != nil {
		return Backup{}, err
	}
	return out.Attributes.backup(), nil
}

// Backup reads one backup.
func (c *Client) Backup(ctx context.Context, identifier, uuid string) (Backup, error) {
	var out item[backupJSON]
	if err := c.clientCall(ctx, "backups.get", http.MethodGet, identifier, backupPath(uuid, ""), nil, &out); err != nil {
		return Backup{}, err
	}
	return out.Attributes.backup(), nil
}

// RestoreBackup restores a backup; with truncate the server's files are
// deleted first. Wings stops the server, which is "restoring_backup" until
// it ends. The panel refuses a backup still running and a server that is
// not in a normal state (400, permanent, in its words); it decides for
// itself about a backup that completed without success (it hands it to
// Wings), so no check is made here.
func (c *Client) RestoreBackup(ctx context.Context, identifier, uuid string, truncate bool) error {
	body := map[string]bool{"truncate": truncate}
	return c.clientCall(ctx, "backups.restore", http.MethodPost, identifier, backupPath(uuid, "/restore"), body, nil)
}

// DeleteBackup deletes a backup; one still running is cancelled. A locked
// backup is refused (400).
func (c *Client) DeleteBackup(ctx context.Context, identifier, uuid string) error {
	return c.clientCall(ctx, "backups.delete", http.MethodDelete, identifier, backupPath(uuid, ""), nil, nil)
}

// BackupDownloadURL returns a signed URL on Wings that downloads the
// backup's archive once, for 15 minutes. It carries a token: hand it to
// the user, do not log it.
func (c *Client) BackupDownloadURL(ctx context.Context, identifier, uuid string) (string, error) {
	var out item[struct {
		URL string `json:"url"`
	}]
	if err := c.clientCall(ctx, "backups.download", http.MethodGet, identifier, backupPath(uuid, "/download"), nil, &out); err != nil {
		return "", err
	}
	return out.Attributes.URL, nil
}

func backupPath(uuid, rest string) string { return "/backups/" + url.PathEscape(uuid) + rest }
