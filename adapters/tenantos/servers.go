package tenantos

import (
	"context"
	"net/http"
	"net/netip"
	"slices"
)

// Server is a bare-metal server as the panel shows it.
type Server struct {
	ID          int
	ServerName  string
	Hostname    string
	UserID      int
	OS          string
	Description string
	Tags        []string
	// SuspendedUserIDs are the users the server is suspended for; Suspended
	// is set while there is any.
	SuspendedUserIDs []int
	Suspended        bool
	PrimaryIP        string
	// Power is the panel's cachedPowerstatus: "online", "offline", or ""
	// when unknown. It may lag behind; PowerStatus asks the BMC.
	Power string
	// ReinstallationRunning, DiskWipeRunning and RescueBootRunning say
	// what the server is busy with; RescueBootRunning stays set while the
	// rescue system runs.
	ReinstallationRunning, DiskWipeRunning, RescueBootRunning bool
	Hardware                                                  Hardware
	// IPs are the server's addresses as the server view lists them: the
	// view carries neither assignment ids nor descriptions, so those are
	// zero here; IPAssignments has them.
	IPs []IPAssignment
}

// Hardware is the inventory the panel collected.
type Hardware struct {
	Mainboard, CPUModel                                   string
	CPUMHz, CPUCores, CPUThreads, MemoryMB, MemoryModules int
	Disks                                                 []Disk
}

// Disk is one drive.
type Disk struct {
	Model   string
	SizeMiB int
}

// IPAssignment is an address assigned to a server, with its subnet.
type IPAssignment struct {
	ID          int
	IP          string
	CIDR        int
	Gateway     string
	Primary     bool
	IPv6        bool
	Description string
}

// serverJSON is a server as GET /api/servers/{id} shows it.
type serverJSON struct {
	ID                    flexInt      `json:"id"`
	ServerName            flexString   `json:"servername"`
	Hostname              flexString   `json:"hostname"`
	UserID                flexInt      `json:"user_id"`
	OS                    flexString   `json:"os"`
	Description           flexString   `json:"description"`
	Tags                  []string     `json:"tags"`
	SuspendedUserIDs      []flexInt    `json:"suspendedUserIds"`
	IsSuspended           flexBool     `json:"isSuspended"`
	PrimaryIP             flexString   `json:"primaryip"`
	CachedPowerstatus     flexString   `json:"cachedPowerstatus"`
	ReinstallationRunning flexBool     `json:"reinstallationRunning"`
	DiskwipeRunning       flexBool     `json:"diskwipeRunning"`
	RescueBootRunning     flexBool     `json:"rescueBootRunning"`
	Hardware              hardwareJSON `json:"detailedHardwareInformation"`
	IPAssignments         []ipJSON     `json:"ipassignments"`
}

// hardwareJSON is detailedHardwareInformation: a summary per component,
// with sizes as strings.
type hardwareJSON struct {
	Mainboard struct {
		Model flexString `json:"model"`
	} `json:"mainboard"`
	CPU struct {
		Model   flexString `json:"model"`
		MHz     flexInt    `json:"value"`
		Cores   flexInt    `json:"cores"`
		Threads flexInt    `json:"threads"`
	} `json:"cpu"`
	Memory struct {
		MB    flexInt `json:"value"`
		Count flexInt `json:"count"`
	} `json:"memory"`
	Disk struct {
		Details []struct {
			Model flexString `json:"model"`
			Size  flexInt    `json:"size"` // MiB
		} `json:"details"`
	} `json:"disk"`
}

// ipJSON is an IP assignment as GET .../ipassignments shows it.
type ipJSON struct {
	ID           flexInt    `json:"id"`
	IP           flexString `json:"ip"`
	Primary      flexBool   `json:"primary_ip"`
	Description  flexString `json:"description"`
	IPAttributes struct {
		IsIPv6 flexBool `json:"isIpv6"`
	} `json:"ipAttributes"`
	Subnet struct {
		CIDR    flexInt    `json:"cidr"`
		Gateway flexString `json:"gw"`
		Type    flexString `json:"type"`
	} `json:"subnetinformation"`
}

func (j ipJSON) assignment() IPAssignment {
	a := IPAssignment{ID: int(j.ID), IP: string(j.IP), CIDR: int(j.Subnet.CIDR), Gateway: string(j.Subnet.Gateway),
		Primary: bool(j.Primary), Description: string(j.Description)}
	// Either flag says v6; the address itself decides when neither is sent.
	a.IPv6 = bool(j.IPAttributes.IsIPv6) || j.Subnet.Type == "v6"
	if addr, err := netip.ParseAddr(a.IP); err == nil && !a.IPv6 {
		a.IPv6 = addr.Is6() && !addr.Is4In6()
	}
	return a
}

func (j serverJSON) server() Server {
	s := Server{ID: int(j.ID), ServerName: string(j.ServerName), Hostname: string(j.Hostname), UserID: int(j.UserID),
		OS: string(j.OS), Description: string(j.Description), Tags: j.Tags, PrimaryIP: string(j.PrimaryIP),
		Power: string(j.CachedPowerstatus), ReinstallationRunning: bool(j.ReinstallationRunning),
		DiskWipeRunning: bool(j.DiskwipeRunning), RescueBootRunning: bool(j.RescueBootRunning)}
	for _, id := range j.SuspendedUserIDs {
		s.SuspendedUserIDs = append(s.SuspendedUserIDs, int(id))
	}
	s.Suspended = bool(j.IsSuspended) || len(s.SuspendedUserIDs) > 0
	h := j.Hardware
	s.Hardware = Hardware{Mainboard: string(h.Mainboard.Model), CPUModel: string(h.CPU.Model), CPUMHz: int(h.CPU.MHz),
		CPUCores: int(h.CPU.Cores), CPUThreads: int(h.CPU.Threads), MemoryMB: int(h.Memory.MB), MemoryModules: int(h.Memory.Count)}
	for _, d := range h.Disk.Details {
		s.Hardware.Disks = append(s.Hardware.Disks, Disk{Model: string(d.Model), SizeMiB: int(d.Size)})
	}
	for _, ip := range j.IPAssignments {
		s.IPs = append(s.IPs, ip.assignment())
	}
	return s
}

func servers(list []serverJSON) []Server {
	out := make([]Server, 0, len(list))
	for _, j := range list {
		out = append(out, j.server())
	}
	return out
}

// Servers lists every server the key may see.
func (c *Client) Servers(ctx context.Context) ([]Server, error) {
	var out []serverJSON
	if err := c.call(ctx, "servers.list", http.MethodGet, pathServers, nil, &out); err != nil {
		return nil, err
	}
	return servers(out), nil
}

// ServersByTags lists the servers that have ALL of tags. The panel refuses
// an empty list (422).
func (c *Client) ServersByTags(ctx context.Context, tags []string) ([]Server, error) {
	var out []serverJSON
	if err := c.call(ctx, "servers.getByTags", http.MethodPost, pathByTags, byTagsJSON{Tags: tags}, &out); err != nil {
		return nil, err
	}
	// Whether getByTags matches all tags or any is not documented: keep
	// only the servers with all of them, so that either way a server
	// reserved by one tag is never taken for another.
	matching := make([]Server, 0, len(out))
	for _, s := range servers(out) {
		if hasAllTags(s, tags) {
			matching = append(matching, s)
		}
	}
	return matching, nil
}

// Server reads one server; a missing one is ErrNotFound.
func (c *Client) Server(ctx context.Context, id int) (Server, error) {
	var out serverJSON
	if err := c.call(ctx, "servers.get", http.MethodGet, serverPath(id), nil, &out); err != nil {
		return Server{}, err
	}
	return out.server(), nil
}

// ServerUpdate changes a server; nil fields stay unchanged.
type ServerUpdate struct {
	Hostname, ServerName, Description *string
	// UserID gives the server to another user.
	UserID *int
	// Tags replaces the server's tags.
	Tags *[]string
	// SuspendUserIDs suspends the server for those users: the owner's id
	// suspends it, an empty list lifts the suspension.
	SuspendUserIDs *[]int
	// SuspendPowerAction is carried out with a suspension change: "",
	// "none", "setPowerOff" or "setPowerOn".
	SuspendPowerAction string
}

// UpdateServer changes a server (PUT /api/servers/{id}) and returns it as
// the panel then shows it. Nothing changes unless every field is valid
// (422 otherwise).
func (c *Client) UpdateServer(ctx context.Context, id int, u ServerUpdate) (Server, error) {
	//lint:ignore S1016 the wire struct is a guess kept in wire.go; a conversion would tie the two together
	body := updateJSON{Hostname: u.Hostname, ServerName: u.ServerName, Description: u.Description, UserID: u.UserID,
		Tags: u.Tags, SuspendUserIDs: u.SuspendUserIDs, SuspendPowerAction: u.SuspendPowerAction}
	if body.Tags != nil && *body.Tags == nil {
		// A nil slice would be sent as null, which clears nothing.
		body.Tags = &[]string{}
	}
	if body.SuspendUserIDs != nil && *body.SuspendUserIDs == nil {
		body.SuspendUserIDs = &[]int{}
	}
	var out serverJSON
	if err := c.call(ctx, "servers.update", http.MethodPut, serverPath(id), body, &out); err != nil {
		return Server{}, err
	}
	return out.server(), nil
}

// IPAssignments lists a server's addresses with their ids.
func (c *Client) IPAssignments(ctx context.Context, id int) ([]IPAssignment, error) {
	var out []ipJSON
	if err := c.call(ctx, "ipassignments.list", http.MethodGet, ipsPath(id), nil, &out); err != nil {
		return nil, err
	}
	ips := make([]IPAssignment, 0, len(out))
	for _, j := range out {
		ips = append(ips, j.assignment())
	}
	return ips, nil
}

// NewIPAssignment is an address to assign. CIDR 0 leaves the panel's
// default (a single address: /32 or /128).
type NewIPAssignment struct {
	IP          string
	CIDR        int
	Gateway     string
	Description string
}

// AddIPAssignment assigns an address to a server and returns the
// assignment. The panel refuses an invalid address (422) and one already
// assigned to any server (400). The path and body are guesses (wire.go).
func (c *Client) AddIPAssignment(ctx context.Context, id int, a NewIPAssignment) (IPAssignment, error) {
	var out ipJSON
	//lint:ignore S1016 the wire struct is a guess kept in wire.go; a conversion would tie the two together
	body := newIPJSON{IP: a.IP, CIDR: a.CIDR, Gateway: a.Gateway, Description: a.Description}
	if err := c.call(ctx, "ipassignments.add", http.MethodPost, ipsPath(id), body, &out); err != nil {
		return IPAssignment{}, err
	}
	return out.assignment(), nil
}

// DeleteIPAssignment removes one of a server's assignments; an unknown
// one (or one of another server) is ErrNotFound. The path is a guess
// (wire.go).
func (c *Client) DeleteIPAssignment(ctx context.Context, serverID, assignmentID int) error {
	return c.call(ctx, "ipassignments.delete", http.MethodDelete, ipPath(serverID, assignmentID), nil, nil)
}

// hasAllTags reports whether s has every tag.
func hasAllTags(s Server, tags []string) bool {
	for _, t := range tags {
		if !slices.Contains(s.Tags, t) {
			return false
		}
	}
	return true
}
