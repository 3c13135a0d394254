package web

import (
	"net/http"
	"slices"
	"testing"

	"github.com/hostfleet/provisiond/jobs"
)

// FuzzDecodeAction checks that no request body can make the action decoder
// panic, answer with anything but a 400, or let an unknown action through.
func FuzzDecodeAction(f *testing.F) {
	for _, seed := range []string{
		`{"action":"restart"}`, `{"action":5}`, `{"action":`, `[]`, `null`, ``, `{"action":"x"}{}`,
		`{"action":"start","extra":{"deep":[1,2,3]}}`, "\xff\xfe", `{"action":"stop\u0000"}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := decodeAction(body)
		if err != nil {
			if err.Status != http.StatusBadRequest || err.Message == "" {
				t.Fatalf("decodeAction(%q) = %d %q, want a 400 with a message", body, err.Status, err.Message)
			}
			return
		}
		if !slices.Contains(jobs.PowerActions, req.Action) {
			t.Fatalf("decodeAction(%q) accepted action %q", body, req.Action)
		}
	})
}

// FuzzDecodeCreateService does the same for service registration.
func FuzzDecodeCreateService(f *testing.F) {
	f.Add([]byte(`{"name":"a","provider":"proxmox","plan":{"cores":1,"memoryMb":512,"diskGb":1},"providerRef":{"node":"pve1","vmid":100}}`))
	f.Add([]byte(`{"plan":{"cores":"x"}}`))
	f.Add([]byte(`{"billingPeriodEnd":"2026-13-40T99:00:00Z"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var req createServiceRequest
		if err := decodeJSON(body, &req); err != nil {
			if err.Status != http.StatusBadRequest {
				t.Fatalf("decodeJSON(%q) status %d", body, err.Status)
			}
			return
		}
		_, errs := req.validate()
		if len(errs) == 0 && (req.Plan == nil || !slices.Contains(supportedProviders, req.Provider)) {
			t.Fatalf("validate accepted %q", body)
		}
	})
}
