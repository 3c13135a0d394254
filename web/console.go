package web

import (
	"context"
	"embed"
	"errors"
	"html/template"
	"io"
	"io/fs"
	"net/http"
	"time"

	"github.com/google/uuid"
	"github.com/gorilla/websocket"
	"github.com/jackc/pgx/v5"

	"github.com/hostfleet/provisiond/jobs"
	"github.com/hostfleet/provisiond/queries"
)

// consoleFiles are noVNC (MPL-2.0, from the @novnc/novnc package) and the
// page that embeds it.
//
//go:embed console
var consoleFiles embed.FS

// noVNCPath is where noVNC's modules are served.
const noVNCPath = "/console/novnc"

var embedPage = template.Must(template.ParseFS(consoleFiles, "console/embed.html"))

// noVNC serves noVNC's modules; they hold nothing secret.
func noVNC() http.Handler {
	sub, _ := fs.Sub(consoleFiles, "console/novnc")
	return http.StripPrefix(noVNCPath, http.FileServerFS(sub))
}

// openConsole starts a console job: it checks the VM and records a one-time
// session whose URLs the finished job shows once.
func (s *Server) openConsole(w http.ResponseWriter, r *http.Request) error {
	svc, err := s.usableProxmoxService(r)
	if err != nil {
		return err
	}
	return s.insertJob(w, r, svc.ID, jobs.ConsoleArgs{ServiceID: svc.ID})
}

// consoleEmbed serves the page of a console session, with noVNC connected
// to the gateway: GET /console/{token}, without a key, so that a panel can
// put it in an iframe as it is. The one-time token is the credential; the
// browser's connection to the gateway spends it. A session spent, expired
// or unknown gets a page that says so.
func (s *Server) consoleEmbed(w http.ResponseWriter, r *http.Request) error {
	token := r.PathValue("token")
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer")
	sess, err := s.Queries.GetConsoleSession(r.Context(), jobs.ConsoleTokenHash(token))
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return err
	}
	if err != nil || sess.UsedAt != nil || time.Now().After(sess.ExpiresAt) {
		w.WriteHeader(http.StatusGone)
		return embedPage.Execute(w, embedView{Ended: true})
	}
	svc, err := s.Queries.GetService(r.Context(), sess.ServiceID)
	if err != nil {
		return err
	}
	return embedPage.Execute(w, embedView{Name: svc.Name, Assets: noVNCPath, Socket: "/api/console/" + token})
}

// embedView is what the console page shows: a live session, or that it
// has ended.
type embedView struct {
	Name, Assets, Socket string
	Ended                bool
}

var consoleUpgrader = websocket.Upgrader{
	Subprotocols:    []string{"binary"},
	ReadBufferSize:  16 << 10,
	WriteBufferSize: 16 << 10,
	// The one-time token in the URL is the credential, not a cookie, so a
	// page of another origin gains nothing by connecting.
	CheckOrigin: func(*http.Request) bool { return true },
}

// consoleGateway relays a browser's websocket to the VM's VNC console. The
// token is taken once; the gateway opens the Proxmox console, logs in to it
// with the VNC ticket, and offers the browser a session without a
// password, so that neither the ticket nor the Proxmox URL leaves here.
func (s *Server) consoleGateway(w http.ResponseWriter, r *http.Request) error {
	if !websocket.IsWebSocketUpgrade(r) {
		return &apiError{Status: http.StatusBadRequest, Message: "This is a websocket endpoint"}
	}
	sess, err := s.Queries.UseConsoleSession(r.Context(), jobs.ConsoleTokenHash(r.PathValue("token")))
	if errors.Is(err, pgx.ErrNoRows) {
		return &apiError{Status: http.StatusForbidden, ErrorKey: "console_session_spent",
			Message: "This console session was used, has expired or does not exist; open a new one"}
	}
	if err != nil {
		return err
	}
	log := s.logger(r).With("service_id", sess.ServiceID, "job_id", sess.JobID, "provider", "proxmox")
	svc, err := s.Queries.GetService(r.Context(), sess.ServiceID)
	if err != nil {
		return err
	}
	// The session stands for the key that asked for it: it opens only
	// while that key may still use the console.
	if r, err = s.asKeyOfJob(r, sess.JobID, svc); err != nil {
		return &apiError{Status: http.StatusForbidden, ErrorKey: "console_session_spent",
			Message: "This console session was used, has expired or does not exist; open a new one"}
	}
	if s.VPS == nil {
		return providerMissing(jobs.ProviderProxmox)
	}
	up, ticket, err := s.VPS.DialConsole(r.Context(), &svc)
	if err != nil {
		return providerError(err)
	}
	defer up.Close()
	upstream := &wsStream{conn: up}
	if err := rfbLogin(upstream, ticket); err != nil {
		log.Warn("console: VNC login failed", "err", err)
		return &apiError{Status: http.StatusBadGateway, ErrorKey: "provider_error", Message: "The VM's console refused the connection"}
	}
	down, err := consoleUpgrader.Upgrade(w, r, nil)
	if err != nil {
		return nil // the upgrader has answered
	}
	defer down.Close()
	browser := &wsStream{conn: down}
	if err := rfbServeNone(browser); err != nil {
		log.Info("console: browser left during the handshake", "err", err)
		return nil
	}
	log.Info("console connected")
	start := time.Now()
	done := make(chan struct{}, 2)
	go func() { io.Copy(upstream, browser); done <- struct{}{} }()
	go func() { io.Copy(browser, upstream); done <- struct{}{} }()
	revoked := s.watchAccess(r)
	select {
	case <-done:
	case <-revoked:
		log.Info("console closed: the key that opened it may no longer use it")
	}
	up.Close()
	down.Close()
	<-done
	log.Info("console closed", "duration", time.Since(start).Round(time.Second))
	return nil
}

// asKeyOfJob returns the request as made by the key that asked for the
// job, deciding (for the console) whether that key may still use svc.
func (s *Server) asKeyOfJob(r *http.Request, job uuid.UUID, svc queries.Service) (*http.Request, error) {
	j, err := s.Queries.GetJob(r.Context(), job)
	if err != nil {
		return r, err
	}
	return s.asKey(r, j.ApiKeyID.UUID, svc)
}

// asKey returns the request as made by the key (for a console token or
// session it asked for), and decides whether the key may still use the
// console of svc: it must not be revoked or expired, its person must still
// be a member of its team, and its role or grant must give the console.
func (s *Server) asKey(r *http.Request, key uuid.UUID, svc queries.Service) (*http.Request, error) {
	row, err := s.Queries.GetAPIKeyAccess(r.Context(), key)
	if err != nil {
		return r, err
	}
	if row.ApiKey.RevokedAt != nil || row.Role == "" || row.ApiKey.ExpiresAt != nil && !row.ApiKey.ExpiresAt.After(time.Now()) {
		return r, errBadKey
	}
	r = r.WithContext(context.WithValue(r.Context(), callerKey, &caller{key: row.ApiKey, email: row.Email, role: row.Role}))
	r = withPermission(r, "console")
	return r, s.decide(r, svc, "console")
}

// watchAccess returns a channel closed once the request's key may no
// longer do what it was allowed (see stillAllowed; checked at every
// keep-alive), so that a console it opened is cut.
func (s *Server) watchAccess(r *http.Request) <-chan struct{} {
	revoked := make(chan struct{})
	go func() {
		t := time.NewTicker(s.keepAlive())
		defer t.Stop()
		for {
			select {
			case <-r.Context().Done():
				return
			case <-t.C:
				if !s.stillAllowed(r) {
					close(revoked)
					return
				}
			}
		}
	}()
	return revoked
}
