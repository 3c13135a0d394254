package jobs

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/hostfleet/provisiond/queries"
)

// ConsoleArgs ask for a one-time console session of a VPS.
type ConsoleArgs struct {
	ServiceID uuid.UUID `json:"serviceId"`
}

// Kind implements Args.
func (ConsoleArgs) Kind() string { return "vps.console" }

// InsertOpts puts consoles on the critical queue; a console does not hold
// its service, so that one can watch a reinstall.
func (ConsoleArgs) InsertOpts() InsertOpts {
	return InsertOpts{Queue: QueueCritical, MaxAttempts: 3, Timeout: time.Minute, Mutating: false}
}

// ConsoleResult is what a finished console job reports; the URLs come once,
// as the job's secrets.
type ConsoleResult struct {
	ExpiresAt time.Time `json:"expiresAt"`
}

// ConsoleSecrets are the one-time URLs of a console session.
type ConsoleSecrets struct {
	// URL is the gateway's websocket, relative to the API.
	URL string `json:"url"`
	// EmbedURL is a page with noVNC connected to URL, relative to the API;
	// it needs no key, and works in an iframe as it is.
	EmbedURL string `json:"embedUrl"`
}

// ConsoleTokenHash is how a console token is stored and looked up.
func ConsoleTokenHash(token string) []byte {
	h := sha256.Sum256([]byte(token))
	return h[:]
}

// Console implements Worker for ConsoleArgs: it checks that the VM runs and
// records a session that one browser may use once, before ConsoleTTL ends.
// The gateway asks Proxmox for the VNC console when the browser connects,
// as PVE waits only seconds for a console's connection; no Proxmox ticket
// is ever stored.
func (w *VPSWorkers) Console(ctx context.Context, job *Job[ConsoleArgs]) error {
	v, err := existingVM(ctx, w, job)
	if err != nil {
		return err
	}
	ref, _ := v.vm()
	// A console is the keys to the VM: never to one that is not the service's.
	if err := v.tasks.verifyOwn(ctx, ref); err != nil {
		return err
	}
	st, err := w.Proxmox.State(ctx, ref)
	if err != nil {
		return err
	}
	if st.Stopped() {
		return permanent(job.Args.Kind(), "the VM is not running; start it to open its console")
	}
	ttl := w.ConsoleTTL
	if ttl <= 0 {
		ttl = time.Minute
	}
	token := rand.Text()
	sess, err := w.Queries.CreateConsoleSession(ctx, queries.CreateConsoleSessionParams{
		TokenHash: ConsoleTokenHash(token), TeamID: job.Service.TeamID, ServiceID: job.Service.ID,
		JobID: job.Row.ID, ExpiresAt: time.Now().Add(ttl),
	})
	if err != nil {
		return fmt.Errorf("record console session: %w", err)
	}
	job.SetResult(ConsoleResult{ExpiresAt: sess.ExpiresAt.UTC()})
	job.SetSecretResult(ConsoleSecrets{
		URL:      "/api/console/" + token,
		EmbedURL: "/console/" + token,
	})
	return nil
}
