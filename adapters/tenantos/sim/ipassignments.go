package sim

import (
	"fmt"
	"net/http"
	"net/netip"
	"strconv"
)

// addIPAssignment answers POST /api/servers/{id}/ipassignments: ip (a
// valid address), cidr (default a single address: 32 or 128), gateway
// and description. An address assigned to any server is refused. The
// server's first address becomes its primary one. The path and fields are
// a guess (see the package doc).
func (s *Server) addIPAssignment(q *request) (any, error) {
	v := newValidator(q.in)
	var addr netip.Addr
	if v.required("ip") {
		if raw, ok := v.str("ip", 64); ok {
			var err error
			if addr, err = netip.ParseAddr(raw); err != nil || addr.Zone() != "" {
				v.fail("ip", "The :attribute field must be a valid IP address.")
			}
			addr = addr.Unmap()
		}
	}
	bits := 32
	if addr.Is6() {
		bits = 128
	}
	cidr, setCIDR := v.integer("cidr")
	if setCIDR && (cidr < 1 || cidr > bits) {
		v.fail("cidr", fmt.Sprintf("The :attribute field must be between 1 and %d.", bits))
	}
	if !setCIDR {
		cidr = bits
	}
	gateway, _ := v.str("gateway", 64)
	if gw, err := netip.ParseAddr(gateway); gateway != "" && (err != nil || gw.Is6() != addr.Is6()) {
		v.fail("gateway", "The :attribute field must be a valid IP address.")
	}
	description, _ := v.str("description", 255)
	if err := v.err(); err != nil {
		return nil, err
	}
	next := 0
	for _, m := range s.machines {
		for _, a := range m.IPs {
			if have, err := netip.ParseAddr(a.IP); err == nil && have.Unmap() == addr {
				return nil, refuse("The IP address %s is already assigned to a server.", addr)
			}
			next = max(next, a.ID)
		}
	}
	a := IPAssignment{ID: next + 1, IP: addr.String(), CIDR: cidr, Gateway: gateway, Description: description,
		Primary: len(q.m.IPs) == 0}
	q.m.IPs = append(q.m.IPs, a)
	q.m.updated = q.now
	return a.view(q.now), nil
}

// deleteIPAssignment answers DELETE /api/servers/{id}/ipassignments/{assignmentId}:
// 404 as Laravel's route model binding for an assignment that is not the
// server's. A deleted primary address leaves the server without one.
func (s *Server) deleteIPAssignment(q *request) (any, error) {
	raw := q.r.PathValue("assignmentId")
	id, err := strconv.Atoi(raw)
	for i, a := range q.m.IPs {
		if err == nil && a.ID == id {
			q.m.IPs = append(q.m.IPs[:i:i], q.m.IPs[i+1:]...)
			q.m.updated = q.now
			return "ok", nil
		}
	}
	return nil, &apiError{Status: http.StatusNotFound,
		Message: fmt.Sprintf(`No query results for model [App\Models\IpAssignment] %s`, raw)}
}
