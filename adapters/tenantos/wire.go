package tenantos

// This file holds every wire detail of the Tenantos API that is a guess
// rather than something a real integration showed: paths, power method
// names, request body field names, the IPMI statistics fields and the error
// body. Correcting a guess should be a change to this file alone.
//
// Confirmed by real integrations or a third-party client (see
// /work/shared/provider-contracts.md): the paths of servers, getByTags,
// ipassignments (list), power/{method}, provisioning/*, console/start and
// stats/{category}/{mode}; the {"result": ...} envelope; Bearer keys;
// profileId; PUT user_id, hostname, tags, suspendUserIds; setPowerOn and
// setPowerOff.

import (
	"fmt"
	"net/url"
)

// Paths below the panel's base URL.
const (
	pathServers  = "/api/servers"
	pathByTags   = "/api/servers/getByTags"
	pathServerFm = "/api/servers/%d"
	// Guess: the list is confirmed, adding (POST to the list) and deleting
	// (DELETE of /{assignmentId}) are not.
	pathIPsFm     = "/api/servers/%d/ipassignments"
	pathIPFm      = "/api/servers/%d/ipassignments/%d"
	pathPowerFm   = "/api/servers/%d/power/%s"
	pathProvFm    = "/api/servers/%d/provisioning/%s"
	pathConsoleFm = "/api/servers/%d/console/start"
	pathStatsFm   = "/api/servers/%d/stats/%s/%s"
)

func serverPath(id int) string         { return fmt.Sprintf(pathServerFm, id) }
func ipsPath(id int) string            { return fmt.Sprintf(pathIPsFm, id) }
func ipPath(id, assignment int) string { return fmt.Sprintf(pathIPFm, id, assignment) }
func powerPath(id int, method string) string {
	return fmt.Sprintf(pathPowerFm, id, url.PathEscape(method))
}
func provPath(id int, action string) string { return fmt.Sprintf(pathProvFm, id, action) }
func consolePath(id int) string             { return fmt.Sprintf(pathConsoleFm, id) }
func statsPath(id int, category, mode string) string {
	return fmt.Sprintf(pathStatsFm, id, url.PathEscape(category), url.PathEscape(mode))
}

// Provisioning actions, the last path segment under provisioning/.
const (
	provGetProfiles   = "getProfiles"
	provStart         = "startReinstallation"
	provInstallStatus = "getInstallStatus"
	provStop          = "stopReinstallation"
)

// Power methods for Power. setPowerOn and setPowerOff are confirmed; the
// names of reset and cycle are guesses (what a server's
// powerprovider.supportedFeatures lists in the simulator).
const (
	// PowerOn switches the server on.
	PowerOn = "setPowerOn"
	// PowerOff switches the server off hard.
	PowerOff = "setPowerOff"
	// PowerReset resets the server (a warm reboot through the BMC).
	PowerReset = "setPowerReset"
	// PowerCycle switches the server off and on again.
	PowerCycle = "setPowerCycle"
)

// powerStatusMethod reads the power state through the power provider.
const powerStatusMethod = "getPowerStatus"

// StatsCategories are the statistics categories Stats accepts. "ipmi"
// (the BMC's sensors) is named by a third-party client; its fields are a
// guess (see statsPointJSON).
var StatsCategories = []string{"network", "cpu", "memory", "diskio", "ipmi"}

// updateJSON is the body of PUT /api/servers/{id}. user_id, hostname, tags
// and suspendUserIds are confirmed; servername, description and
// suspendPowerAction are guesses.
type updateJSON struct {
	Hostname           *string   `json:"hostname,omitempty"`
	ServerName         *string   `json:"servername,omitempty"`
	Description        *string   `json:"description,omitempty"`
	UserID             *int      `json:"user_id,omitempty"`
	Tags               *[]string `json:"tags,omitempty"`
	SuspendUserIDs     *[]int    `json:"suspendUserIds,omitempty"`
	SuspendPowerAction string    `json:"suspendPowerAction,omitempty"`
}

// byTagsJSON is the body of POST /api/servers/getByTags (confirmed).
type byTagsJSON struct {
	Tags []string `json:"tags"`
}

// newIPJSON is the body that adds an IP assignment. Guess.
type newIPJSON struct {
	IP          string `json:"ip"`
	CIDR        int    `json:"cidr,omitempty"`
	Gateway     string `json:"gateway,omitempty"`
	Description string `json:"description,omitempty"`
}

// reinstallJSON is the body of startReinstallation. profileId is
// confirmed; the other names follow the seed document (002), which lists
// them as a panel's request schema, and remain guesses.
type reinstallJSON struct {
	ProfileID              int      `json:"profileId"`
	DiskLayoutID           int      `json:"disklayoutId,omitempty"`
	UserProvidedDiskLayout string   `json:"userprovidedDiskLayout,omitempty"`
	RootPassword           string   `json:"rootpassword,omitempty"`
	Hostname               string   `json:"hostname,omitempty"`
	SSHKeys                []string `json:"sshkeys,omitempty"`
	RunScripts             []int    `json:"runScripts,omitempty"`
	ConfigureAllIPv4       *bool    `json:"configure_all_ipvfour,omitempty"`
	ConfigureAllIPv6       *bool    `json:"configure_all_ipvsix,omitempty"`
	InstallPowerAction     string   `json:"installPowerAction,omitempty"`
}

// stopQuery is the query of stopReinstallation, a GET: withoutPowerReset=1
// keeps the server running. Guess.
func stopQuery(withoutPowerReset bool) string {
	if withoutPowerReset {
		return "?withoutPowerReset=1"
	}
	return ""
}

// consoleQuery is the query of console/start, a GET: authorizedIp is the
// only address that may open the session (the caller's when absent),
// consoleMode "standard" or "web". Both names are guesses (the seed says
// "authorizedIp = client" and "consoleMode").
func consoleQuery(authorizedIP, mode string) string {
	q := url.Values{}
	if authorizedIP != "" {
		q.Set("authorizedIp", authorizedIP)
	}
	if mode != "" {
		q.Set("consoleMode", mode)
	}
	if len(q) == 0 {
		return ""
	}
	return "?" + q.Encode()
}

// consoleJSON is console/start's result. accessUrl is a guess.
type consoleJSON struct {
	AccessURL string `json:"accessUrl"`
}

// statsTimeLayout is how from and to are sent, in UTC. Guess.
const statsTimeLayout = "2006-01-02T15:04:05"

// statsQueryJSON is the body of POST stats/{category}/{mode}. Guess.
type statsQueryJSON struct {
	Predefined string `json:"predefined,omitempty"`
	From       string `json:"from,omitempty"`
	To         string `json:"to,omitempty"`
}

// statsPortJSON is one switch port of the network category:
// {"switch","port","stats":[points]}. Guess.
type statsPortJSON struct {
	Switch string            `json:"switch"`
	Port   string            `json:"port"`
	Stats  *[]statsPointJSON `json:"stats"`
}

// statsPointJSON is one point of a graph or one day of a text summary.
// The names of the network, cpu, memory and diskio fields are guesses
// modelled on the panel's graphs; the ipmi fields (powerState, powerWatts,
// inletTemp, cpuTemp, fanRpm) are entirely our guess.
type statsPointJSON struct {
	Timestamp  string    `json:"timestamp"` // "2006-01-02 15:04:05", UTC
	Date       string    `json:"date"`      // text mode: "2006-01-02"
	BytesIn    flexInt   `json:"bytesIn"`
	BytesOut   flexInt   `json:"bytesOut"`
	PacketsIn  flexInt   `json:"packetsIn"`
	PacketsOut flexInt   `json:"packetsOut"`
	Usage      flexFloat `json:"usage"`
	Peak       flexFloat `json:"peak"`
	Cores      flexInt   `json:"cores"`
	Used       flexInt   `json:"used"`
	Total      flexInt   `json:"total"`
	ReadBytes  flexInt   `json:"readBytes"`
	WriteBytes flexInt   `json:"writeBytes"`
	ReadOps    flexInt   `json:"readOps"`
	WriteOps   flexInt   `json:"writeOps"`
	PowerState string    `json:"powerState"`
	PowerWatts flexFloat `json:"powerWatts"`
	InletTemp  flexFloat `json:"inletTemp"`
	CPUTemp    flexFloat `json:"cpuTemp"`
	FanRPM     flexInt   `json:"fanRpm"`
}

// errorJSON is a refusal as Laravel renders it for a JSON client:
// {"message": "...", "errors": {"field": ["...", ...]}}. The shape is
// Laravel's; that Tenantos does not change it is a guess. errors is read
// in order by readFieldErrors, not through this struct.
type errorJSON struct {
	Message string `json:"message"`
}

// resultJSON is the success envelope {"result": ..., "message": "success"}
// (confirmed).
type resultJSON[T any] struct {
	Result  T      `json:"result"`
	Message string `json:"message"`
}
