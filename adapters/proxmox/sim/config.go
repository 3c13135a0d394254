package sim

import (
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// currentConfig is the VM's configuration as its file holds it, without
// pending changes; the lock must be held.
func (st *vmState) currentConfig() map[string]string {
	if st.temp {
		return map[string]string{"description": " qmclone temporary file\n", "lock": "clone"}
	}
	m := maps.Clone(st.Config)
	m["name"] = st.Name
	m["cores"] = strconv.Itoa(st.Cores)
	m["sockets"] = strconv.Itoa(st.Sockets)
	m["memory"] = strconv.Itoa(st.MemoryMB)
	m["scsi0"] = st.disk + ",size=" + formatSize(st.diskBytes)
	if st.Description != "" {
		m["description"] = st.Description
	}
	if len(st.Tags) > 0 {
		m["tags"] = strings.Join(st.Tags, ";")
	}
	if st.Template {
		m["template"] = "1"
	}
	if st.Lock != "" {
		m["lock"] = st.Lock
	}
	return m
}

// digest is the SHA1 of the configuration file, pending section included;
// the lock must be held.
func (st *vmState) digest() string {
	cur := st.currentConfig()
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(cur)) {
		fmt.Fprintf(&b, "%s: %s\n", k, cur[k])
	}
	if len(st.pending) > 0 {
		b.WriteString("\n[PENDING]\n")
		for _, k := range slices.Sorted(maps.Keys(st.pending)) {
			fmt.Fprintf(&b, "%s: %s\n", k, st.pending[k])
		}
	}
	return fmt.Sprintf("%x", sha1.Sum([]byte(b.String())))
}

// configIntKeys are the keys GET config answers as JSON numbers. PVE 8.1
// and later answer memory as a string (it became a property string).
var configIntKeys = []string{"cores", "sockets", "template", "onboot", "protection", "balloon", "cpuunits", "vcpus", "numa", "acpi", "kvm", "tablet"}

// renderConfig is the answer of GET config: pending values applied unless
// current is set, cipassword hidden, and the digest; the lock must be held.
func (st *vmState) renderConfig(current bool) map[string]any {
	cfg := st.currentConfig()
	if !current && !st.temp {
		maps.Copy(cfg, st.pending)
	}
	out := make(map[string]any, len(cfg)+1)
	for k, v := range cfg {
		if slices.Contains(configIntKeys, k) {
			if n, err := strconv.Atoi(v); err == nil {
				out[k] = n
				continue
			}
		}
		out[k] = v
	}
	if _, ok := out["cipassword"]; ok {
		out["cipassword"] = "**********"
	}
	out["digest"] = st.digest()
	return out
}

func (s *Server) configGet(r *http.Request, c *call) (any, error) {
	q := r.URL.Query()
	if v := q.Get("snapshot"); v != "" {
		return nil, serverError("snapshot '%s' does not exist", v)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	st, err := s.vm(c)
	if err != nil {
		return nil, err
	}
	return st.renderConfig(isTrue(q.Get("current"))), nil
}

// pendingList answers GET /pending: each key with its current value and,
// when it changes at the next start, its pending one.
func pendingList(st *vmState) any {
	cur := st.currentConfig()
	keys := slices.Sorted(maps.Keys(cur))
	for k := range st.pending {
		if _, ok := cur[k]; !ok {
			keys = append(keys, k)
		}
	}
	out := []map[string]any{}
	for _, k := range keys {
		item := map[string]any{"key": k}
		if v, ok := cur[k]; ok {
			item["value"] = v
			if k == "cipassword" {
				item["value"] = "**********"
			}
		}
		if v, ok := st.pending[k]; ok {
			item["pending"] = v
		}
		out = append(out, item)
	}
	out = append(out, map[string]any{"key": "digest", "value": st.digest()})
	return out
}

// hotplugless are the keys a running VM takes only at its next start
// (PVE's default hotplug is network,disk,usb).
var hotplugless = []string{"cores", "sockets", "memory", "boot", "cpu", "ostype", "agent"}

// applyPending applies the pending changes, as a start does; the lock must
// be held.
func (st *vmState) applyPending() {
	for k, v := range st.pending {
		st.setKey(k, v)
	}
	st.pending = nil
}

// setKey sets one configuration key; the lock must be held. Values were
// validated by validateConfig.
func (st *vmState) setKey(k, v string) {
	switch k {
	case "name":
		st.Name = v
	case "cores":
		st.Cores, _ = strconv.Atoi(v)
	case "sockets":
		st.Sockets, _ = strconv.Atoi(v)
	case "memory":
		st.MemoryMB, _ = strconv.Atoi(strings.TrimPrefix(v, "current="))
	case "description":
		st.Description = v
	case "tags":
		st.Tags = splitTags(v)
	default:
		st.Config[k] = v
	}
}

// deleteKey removes one configuration key, restoring PVE's default for the
// structured ones; the lock must be held.
func (st *vmState) deleteKey(k string) {
	switch k {
	case "name":
		st.Name = ""
	case "cores":
		st.Cores = 1
	case "sockets":
		st.Sockets = 1
	case "memory":
		st.MemoryMB = 512
	case "description":
		st.Description = ""
	case "tags":
		st.Tags = nil
	case "vmstate":
		delete(st.Config, "vmstate")
		delete(st.Config, "runningmachine")
		if st.Lock == "suspended" {
			st.Lock = ""
		}
	default:
		delete(st.Config, k)
	}
	delete(st.pending, k)
}

// hasKey reports whether the configuration sets k; the lock must be held.
func (st *vmState) hasKey(k string) bool {
	if _, ok := st.pending[k]; ok {
		return true
	}
	_, ok := st.currentConfig()[k]
	return ok
}

var (
	indexedKey  = regexp.MustCompile(`^(net|ipconfig|ide|sata|scsi|virtio|unused|serial)(\d+)$`)
	tagRE       = regexp.MustCompile(`(?i)^[a-z0-9_][a-z0-9_\-+.]*$`)
	dnsNameRE   = regexp.MustCompile(`^[a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?(\.[a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?)*$`)
	urlencRE    = regexp.MustCompile(`^[-%a-zA-Z0-9_.!~*'()]*$`)
	macRE       = regexp.MustCompile(`^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$`)
	sshKeyRE    = regexp.MustCompile(`^(ssh-(rsa|ed25519|dss)|ecdsa-sha2-nistp(256|384|521)|sk-\S+)\s+([A-Za-z0-9+/]+={0,2})(\s.*)?$`)
	netModels   = []string{"virtio", "e1000", "e1000e", "rtl8139", "vmxnet3"}
	plainConfig = []string{"name", "cores", "sockets", "memory", "description", "tags", "ciuser", "cipassword", "citype",
		"sshkeys", "nameserver", "searchdomain", "boot", "ostype", "agent", "onboot", "protection", "cpu", "balloon",
		"vmstate", "cdrom", "cicustom", "ciupgrade", "hotplug", "numa", "vga"}
)

// configOption reports whether k is a configuration key the simulator
// knows.
func configOption(k string) bool {
	if slices.Contains(plainConfig, k) {
		return true
	}
	m := indexedKey.FindStringSubmatch(k)
	if m == nil {
		return false
	}
	n, _ := strconv.Atoi(m[2])
	limit := map[string]int{"net": 31, "ipconfig": 31, "ide": 3, "sata": 5, "scsi": 30, "virtio": 15, "unused": 255, "serial": 3}[m[1]]
	return n <= limit
}

// updateParams are the parameters of POST and PUT config that are not
// configuration keys.
var updateParams = []string{"delete", "digest", "skiplock", "revert", "force", "background_delay", "skip_cloud_init"}

// validateConfig checks configuration values the way PVE's schema does and
// normalises them (tags sorted and de-duplicated, a NIC without MAC gets
// one, cipassword hashed). It needs the server for volumes; the lock must
// be held.
func (s *Server) validateConfig(node string, vmid int, p map[string]string) error {
	for k, v := range p {
		if slices.Contains(updateParams, k) {
			continue
		}
		if !configOption(k) {
			return paramError(k, "property is not defined in schema and the schema does not allow additional properties")
		}
		switch {
		case k == "cores" || k == "sockets" || k == "balloon":
			n, err := strconv.Atoi(v)
			if err != nil {
				return paramError(k, fmt.Sprintf("type check ('integer') failed - got '%s'", v))
			}
			if lo := map[string]int{"cores": 1, "sockets": 1}[k]; n < lo {
				return paramError(k, fmt.Sprintf("value must have a minimum value of %d", lo))
			}
		case k == "memory":
			n, err := strconv.Atoi(strings.TrimPrefix(v, "current="))
			if err != nil {
				return paramError(k, fmt.Sprintf("invalid format - type check ('integer') failed - got '%s'\n", v))
			}
			if n < 16 {
				return paramError(k, "invalid format - value must have a minimum value of 16\n")
			}
		case k == "name":
			if !dnsNameRE.MatchString(v) || len(v) > 63 {
				return paramError(k, "invalid format - value does not look like a valid DNS name\n")
			}
		case k == "tags":
			for _, t := range splitTags(v) {
				if !tagRE.MatchString(t) {
					return paramError(k, fmt.Sprintf("invalid format - invalid characters in tag '%s'\n", t))
				}
			}
			p[k] = strings.Join(splitTags(v), ";")
		case k == "sshkeys":
			if !urlencRE.MatchString(v) {
				return paramError(k, fmt.Sprintf("invalid format - invalid urlencoded string: %s\n", v))
			}
			keys, err := url.PathUnescape(v)
			if err != nil {
				return paramError(k, fmt.Sprintf("invalid format - invalid urlencoded string: %s\n", v))
			}
			for _, line := range strings.Split(keys, "\n") {
				if strings.TrimSpace(line) == "" || strings.HasPrefix(strings.TrimSpace(line), "#") {
					continue
				}
				m := sshKeyRE.FindStringSubmatch(strings.TrimSpace(line))
				if m == nil {
					return serverError("SSH public key validation error")
				}
				if _, err := base64.StdEncoding.DecodeString(m[4]); err != nil {
					return serverError("SSH public key validation error")
				}
			}
		case k == "cipassword":
			if !strings.HasPrefix(v, "$5$") && !strings.HasPrefix(v, "$6$") {
				// PVE stores a crypt(3) hash, never the password.
				sum := sha256.Sum256([]byte("salt" + v))
				p[k] = "$5$simsalt$" + base64.RawStdEncoding.EncodeToString(sum[:])
			}
		case k == "boot":
			if v != "" && !strings.HasPrefix(v, "order=") && !regexp.MustCompile(`^[acdn]{1,4}$`).MatchString(v) {
				return paramError(k, "invalid format - format error\nboot.legacy: value does not match the regex pattern\n")
			}
		case strings.HasPrefix(k, "ipconfig"):
			for _, part := range strings.Split(v, ",") {
				key, val, _ := strings.Cut(part, "=")
				switch key {
				case "ip", "ip6":
					if val != "dhcp" && val != "auto" && !validCIDR(val) {
						return paramError(k, fmt.Sprintf("invalid format - format error\n%s.%s: invalid format - invalid IP address with prefix length: '%s'\n", k, key, val))
					}
				case "gw", "gw6":
				default:
					return paramError(k, fmt.Sprintf("invalid format - format error\n%s.%s: property is not defined in schema and the schema does not allow additional properties\n", k, key))
				}
			}
		case strings.HasPrefix(k, "net"):
			parts := strings.Split(v, ",")
			model, mac, _ := strings.Cut(parts[0], "=")
			if !slices.Contains(netModels, model) {
				return paramError(k, fmt.Sprintf("invalid format - format error\n%s.model: value '%s' does not have a value in the enumeration '%s'\n", k, model, strings.Join(netModels, ", ")))
			}
			if mac == "" {
				s.macs++
				parts[0] = model + "=" + macFor(vmid, s.macs)
			} else if !macRE.MatchString(mac) {
				return paramError(k, fmt.Sprintf("invalid format - format error\n%s.macaddr: value does not match the regex pattern\n", k))
			}
			p[k] = strings.Join(parts, ",")
		case k == "cdrom" || strings.HasPrefix(k, "ide") || strings.HasPrefix(k, "sata") || strings.HasPrefix(k, "scsi") || strings.HasPrefix(k, "virtio"):
			if err := s.checkDrive(node, k, v); err != nil {
				return err
			}
		}
	}
	if v, ok := p["cdrom"]; ok {
		delete(p, "cdrom")
		if !strings.Contains(v, "media=cdrom") {
			v += ",media=cdrom"
		}
		p["ide2"] = v
	}
	return nil
}

func validCIDR(v string) bool {
	ip, bits, ok := strings.Cut(v, "/")
	if !ok {
		return false
	}
	n, err := strconv.Atoi(bits)
	if err != nil || n < 0 || n > 128 {
		return false
	}
	return net4or6(ip)
}

func net4or6(ip string) bool {
	parts := strings.Split(ip, ".")
	if len(parts) == 4 {
		for _, p := range parts {
			n, err := strconv.Atoi(p)
			if err != nil || n < 0 || n > 255 {
				return false
			}
		}
		return true
	}
	return strings.Contains(ip, ":")
}

// checkDrive checks a drive value: a CD-ROM ("none", "cdrom" or an ISO
// volume, which must exist) or a disk on a known storage; the lock must be
// held.
func (s *Server) checkDrive(node, key, v string) error {
	file, _, _ := strings.Cut(v, ",")
	if strings.Contains(v, "media=cdrom") || key == "cdrom" {
		if file == "none" || file == "cdrom" || file == "" {
			return nil
		}
		if _, _, err := s.volume(node, file); err != nil {
			return err
		}
		return nil
	}
	sid, _, ok := strings.Cut(file, ":")
	if !ok {
		return paramError(key, fmt.Sprintf("invalid format - format error\n%s.file: invalid format - unable to parse volume ID '%s'\n", key, file))
	}
	if s.storage(node, sid) == nil {
		return serverError("storage '%s' does not exist", sid)
	}
	return nil
}

// splitTags splits a tags value as PVE does (on ';', ',' and spaces),
// sorted and without duplicates.
func splitTags(v string) []string {
	var out []string
	for _, t := range strings.FieldsFunc(v, func(r rune) bool { return r == ';' || r == ',' || r == ' ' }) {
		if !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	slices.Sort(out)
	return out
}

// configUpdate is POST config (sync false: a qmconfig task) and PUT config
// (sync true). Checks that PVE makes before it forks its worker (digest,
// lock, schema) are errors of the request.
func (s *Server) configUpdate(sync bool) handler {
	return func(r *http.Request, c *call) (any, error) {
		p, err := params(r)
		if err != nil {
			return nil, err
		}
		if _, ok := p["background_delay"]; ok && sync {
			return nil, paramError("background_delay", "property is not defined in schema and the schema does not allow additional properties")
		}
		if isTrue(p["skiplock"]) && c.user != "root@pam" {
			return nil, paramError("skiplock", "Only root may use this option.")
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		st, err := s.vm(c)
		if err != nil {
			return nil, err
		}
		if err := s.validateConfig(c.node, c.vmid, p); err != nil {
			return nil, err
		}
		var deletes []string
		for _, k := range strings.FieldsFunc(p["delete"], func(r rune) bool { return r == ',' || r == ';' || r == ' ' }) {
			if k == "cdrom" {
				k = "ide2"
			}
			if _, set := p[k]; set {
				return nil, paramError("delete", fmt.Sprintf("you can't use '-%s' and -delete %s' at the same time", k, k))
			}
			if !configOption(k) {
				return nil, paramError("delete", fmt.Sprintf("unknown option '%s'", k))
			}
			deletes = append(deletes, k)
		}
		changes := map[string]string{}
		for k, v := range p {
			if !slices.Contains(updateParams, k) {
				changes[k] = v
			}
		}
		if len(changes) == 0 && len(deletes) == 0 {
			return nil, serverError("no options specified")
		}
		if d := p["digest"]; d != "" && d != st.digest() {
			return nil, serverError("checksum missmatch (file change by other user?)")
		}
		if err := lockCheck(st); err != nil && !isTrue(p["skiplock"]) && !(slices.Contains(deletes, "vmstate") && st.Lock == "suspended") {
			return nil, err
		}
		release, err := st.takeFlock("exclusive")
		if err != nil {
			return nil, err
		}
		var warnings []string
		for _, k := range deletes {
			if !st.hasKey(k) {
				warnings = append(warnings, fmt.Sprintf("cannot delete '%s' - not set in current configuration!", k))
			}
		}
		apply := func() {
			v, ok := s.vms[vmKey{c.node, c.vmid}]
			if !ok {
				return
			}
			for _, k := range deletes {
				v.deleteKey(k)
			}
			for _, k := range slices.Sorted(maps.Keys(changes)) {
				if v.Status == "running" && slices.Contains(hotplugless, k) {
					if v.pending == nil {
						v.pending = map[string]string{}
					}
					v.pending[k] = changes[k]
					continue
				}
				delete(v.pending, k)
				v.setKey(k, changes[k])
			}
		}
		if sync {
			apply()
			release()
			return nil, nil
		}
		logLine := "update VM " + strconv.Itoa(c.vmid) + ":"
		for _, k := range slices.Sorted(maps.Keys(p)) {
			if k != "digest" {
				val := p[k]
				if k == "cipassword" {
					val = "<hidden>"
				}
				logLine += " -" + k + " " + val
			}
		}
		t := s.callTask(c, taskSpec{node: c.node, typ: "qmconfig", id: strconv.Itoa(c.vmid),
			d: s.cfg.TaskDuration, exit: c.taskError, log: []string{logLine}, warnings: warnings,
			onOK: apply, onEnd: func(string) { release() }})
		return t.upid, nil
	}
}

// formatSize prints a disk size the way PVE's drive strings do.
func formatSize(b int64) string {
	switch {
	case b%gib == 0:
		return fmt.Sprintf("%dG", b/gib)
	case b%(1<<20) == 0:
		return fmt.Sprintf("%dM", b>>20)
	case b%(1<<10) == 0:
		return fmt.Sprintf("%dK", b>>10)
	}
	return strconv.FormatInt(b, 10)
}
